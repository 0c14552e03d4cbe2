"""Built-in task types. They are simulations: they walk the spec's phases, sleep, and return
made-up documents, so the whole system can be demonstrated and tested end to end.

Params every built-in type accepts (its params schema, `builtin_params`, says the same to
the gateway, through the catalogue):
- `step_seconds` (number, default 2): how long each phase takes;
- `fail_at` (a step name): fail there, after reporting that step, as a real task might;
- `company` (string, optional): named in the summary.
Other keys are let through. This module is the one place the built-in types and their labels
are defined. Real deployments register their own handlers instead (see the README).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from marshmallow import INCLUDE, Schema, fields, validate

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext, TaskFailed, TaskResult

DEFAULT_STEP_SECONDS = 2.0
MAX_STEP_SECONDS = 3600.0


@dataclass(frozen=True)
class Step:
    name: str  # what `fail_at` names
    phase: str
    progress_pct: int
    message: str


VALIDATION_KIT_STEPS = (
    Step("assumption_map", "assumption_map", 15, "Mapping your key assumptions..."),
    Step("research_plan", "research_plan", 50, "Building your research plan..."),
    Step("interview_guide", "interview_guide", 80, "Writing your interview guide..."),
)
FS_RESEARCH_STEPS = (
    Step("starting", "starting", 5, "Starting research..."),
    Step("phase_1", "running", 25, "Phase 1: gathering sources..."),
    Step("phase_1_complete", "phase_1_complete", 50, "Phase 1 complete: sources gathered."),
    Step("phase_2", "running", 70, "Phase 2: analysing findings..."),
    Step("phase_2_complete", "phase_2_complete", 90, "Phase 2 complete: writing the report..."),
)
RESEARCH_STEPS = (
    Step("gathering", "running", 10, "Gathering sources (step 1 of 3)..."),
    Step("reading", "running", 40, "Reading sources (step 2 of 3)..."),
    Step("writing", "running", 75, "Writing findings (step 3 of 3)..."),
)
SYNTHESIS_STEPS = (
    Step("collecting", "running", 10, "Collecting inputs (step 1 of 3)..."),
    Step("clustering", "running", 45, "Clustering themes (step 2 of 3)..."),
    Step("drafting", "running", 80, "Drafting the synthesis (step 3 of 3)..."),
)


def _step_seconds(params: dict[str, Any]) -> float:
    value = params.get("step_seconds", DEFAULT_STEP_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskFailed(f"params.step_seconds must be a number, got {value!r}")
    if not 0 <= value <= MAX_STEP_SECONDS:
        raise TaskFailed(f"params.step_seconds must be from 0 to {MAX_STEP_SECONDS:g}")
    return float(value)


def _fail_at(params: dict[str, Any], steps: Sequence[Step]) -> str | None:
    value = params.get("fail_at")
    names = [step.name for step in steps]
    if value is not None and value not in names:
        raise TaskFailed(f"params.fail_at must be one of {', '.join(names)}; got {value!r}")
    return value


async def walk(task: TaskContext, steps: Sequence[Step]) -> None:
    """Report each step, then spend `step_seconds` on it; fail at `fail_at`."""
    params = dict(task.params)
    step_seconds = _step_seconds(params)
    fail_at = _fail_at(params, steps)
    for step in steps:
        await task.report_progress(step.phase, step.progress_pct, step.message)
        if step.name == fail_at:
            raise TaskFailed(f"Simulated failure at {step.name}")
        await asyncio.sleep(step_seconds)


@dataclass(frozen=True)
class Simulation:
    """One simulated task type: its steps, and what it produces at the end."""

    steps: tuple[Step, ...]
    documents: int
    summary: str  # `{company}` is filled in from params
    message: str


def simulated(simulation: Simulation) -> Callable[[TaskContext], Awaitable[TaskResult]]:
    async def run(task: TaskContext) -> TaskResult:
        await walk(task, simulation.steps)
        company = task.params.get("company")
        if not (isinstance(company, str) and company.strip()):
            company = "your company"
        return TaskResult(
            {
                "document_ids": [str(uuid4()) for _ in range(simulation.documents)],
                "summary": simulation.summary.format(company=company),
            },
            message=simulation.message,
        )

    return run


validation_kit = simulated(
    Simulation(
        VALIDATION_KIT_STEPS,
        3,
        "Generated Validation Kit for {company}: "
        "assumption map, research plan and interview guide.",
        "Your Validation Kit is ready — 3 documents generated.",
    )
)
fs_research = simulated(
    Simulation(
        FS_RESEARCH_STEPS,
        1,
        "FS-Research report for {company}.",
        "Your FS-Research report is ready.",
    )
)
research = simulated(
    Simulation(
        RESEARCH_STEPS,
        1,
        "Research findings for {company}.",
        "Research complete — 1 document generated.",
    )
)
synthesis = simulated(
    Simulation(
        SYNTHESIS_STEPS,
        1,
        "Synthesis for {company}.",
        "Synthesis complete — 1 document generated.",
    )
)


class SimulationParams(Schema):
    """The params every simulated type takes; `builtin_params` adds its own `fail_at`."""

    class Meta:
        unknown = INCLUDE  # the simulations ignore keys they do not know

    step_seconds = fields.Float(
        validate=validate.Range(min=0, max=MAX_STEP_SECONDS),
        metadata={"description": "How long each phase takes, in seconds (default 2)."},
    )
    company = fields.String(metadata={"description": "Named in the summary."})


def builtin_params(task_type: str, steps: Sequence[Step]) -> type[Schema]:
    """The params schema of a simulated type: `fail_at` names one of its steps."""
    fail_at = fields.String(
        validate=validate.OneOf([step.name for step in steps]),
        metadata={"description": "Fail at this step, after reporting it."},
    )
    name = task_type.title().replace("_", "") + "Params"
    return type(name, (SimulationParams,), {"fail_at": fail_at})


def register(registry: HandlerRegistry) -> None:
    for task_type, label, run, steps, description in (
        ("validation_kit", "Validation Kit", validation_kit, VALIDATION_KIT_STEPS,
         "Simulated: an assumption map, a research plan and an interview guide."),
        ("fs_research", "FS-Research", fs_research, FS_RESEARCH_STEPS,
         "Simulated: a two-phase research report."),
        ("research", "Research", research, RESEARCH_STEPS,
         "Simulated: gathers, reads and writes up sources."),
        ("synthesis", "Synthesis", synthesis, SYNTHESIS_STEPS,
         "Simulated: clusters inputs into themes and drafts a synthesis."),
    ):  # fmt: skip
        params = builtin_params(task_type, steps)
        registry.register(task_type, run, label=label, description=description, params=params)
