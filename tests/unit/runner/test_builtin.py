"""The built-in simulated task types: the spec's phases, their results, and their params."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from praxiom_progress.runner import builtin
from praxiom_progress.runner.builtin import (
    DEFAULT_STEP_SECONDS,
    FS_RESEARCH_STEPS,
    RESEARCH_STEPS,
    SYNTHESIS_STEPS,
    VALIDATION_KIT_STEPS,
    fs_research,
    research,
    synthesis,
    validation_kit,
)
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext, TaskFailed, TaskResult

Handler = Callable[[TaskContext], Awaitable[TaskResult]]

HANDLERS: dict[str, tuple[Handler, tuple[builtin.Step, ...]]] = {
    "validation_kit": (validation_kit, VALIDATION_KIT_STEPS),
    "fs_research": (fs_research, FS_RESEARCH_STEPS),
    "research": (research, RESEARCH_STEPS),
    "synthesis": (synthesis, SYNTHESIS_STEPS),
}
ALL_STEPS = [
    pytest.param(task_type, step.name, id=f"{task_type}-{step.name}")
    for task_type, (_, steps) in HANDLERS.items()
    for step in steps
]


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    async def __call__(self, phase: str, progress_pct: int, message: str) -> None:
        self.calls.append((phase, progress_pct, message))

    @property
    def phases(self) -> list[tuple[str, int]]:
        return [(phase, pct) for phase, pct, _ in self.calls]


async def run(task_type: str, **params: Any) -> tuple[TaskResult, RecordingSink]:
    sink = RecordingSink()
    handler, _ = HANDLERS[task_type]
    task = TaskContext(task_id=uuid4(), task_type=task_type, params=params, sink=sink)
    return await handler(task), sink


async def run_failing(task_type: str, **params: Any) -> tuple[TaskFailed, RecordingSink]:
    sink = RecordingSink()
    handler, _ = HANDLERS[task_type]
    task = TaskContext(task_id=uuid4(), task_type=task_type, params=params, sink=sink)
    with pytest.raises(TaskFailed) as caught:
        await handler(task)
    return caught.value, sink


def assert_document_ids(result: TaskResult, count: int) -> None:
    ids = result.result_data["document_ids"]
    assert isinstance(ids, list) and len(ids) == count
    for value in ids:
        assert isinstance(value, str)
        assert str(UUID(value)) == value
    assert len(set(ids)) == count


def test_register_adds_the_four_types() -> None:
    registry = HandlerRegistry()
    builtin.register(registry)
    assert set(registry) == set(HANDLERS)
    for task_type, (handler, _) in HANDLERS.items():
        registered = registry.get(task_type)
        assert registered is not None and registered.run is handler


async def test_validation_kit_phases_and_result() -> None:
    result, sink = await run("validation_kit", step_seconds=0)
    assert sink.phases == [("assumption_map", 15), ("research_plan", 50), ("interview_guide", 80)]
    assert sink.calls[1][2] == "Building your research plan..."
    assert isinstance(result, TaskResult)
    assert set(result.result_data) == {"document_ids", "summary"}
    assert_document_ids(result, 3)
    assert isinstance(result.result_data["summary"], str) and result.result_data["summary"]
    assert result.message == "Your Validation Kit is ready — 3 documents generated."


async def test_validation_kit_documents_are_new_each_run() -> None:
    first, _ = await run("validation_kit", step_seconds=0)
    second, _ = await run("validation_kit", step_seconds=0)
    assert set(first.result_data["document_ids"]).isdisjoint(second.result_data["document_ids"])


async def test_fs_research_phases_and_result() -> None:
    result, sink = await run("fs_research", step_seconds=0)
    assert sink.phases == [
        ("starting", 5),
        ("running", 25),
        ("phase_1_complete", 50),
        ("running", 70),
        ("phase_2_complete", 90),
    ]
    pcts = [pct for _, pct in sink.phases]
    assert all(a < b for a, b in itertools.pairwise(pcts))
    assert_document_ids(result, 1)
    assert result.message == "Your FS-Research report is ready."


@pytest.mark.parametrize("task_type", ["research", "synthesis"])
async def test_other_types_report_running_with_the_step_in_the_message(task_type: str) -> None:
    result, sink = await run(task_type, step_seconds=0)
    assert [phase for phase, _ in sink.phases] == ["running", "running", "running"]
    pcts = [pct for _, pct in sink.phases]
    assert all(a < b for a, b in itertools.pairwise(pcts))
    assert 0 < pcts[0] and pcts[-1] < 100
    messages = [message for _, _, message in sink.calls]
    assert len(set(messages)) == 3
    for number, message in enumerate(messages, start=1):
        assert f"step {number} of 3" in message
    assert_document_ids(result, 1)
    assert isinstance(result.message, str) and "1 document generated" in result.message


@pytest.mark.parametrize("task_type", list(HANDLERS))
async def test_every_step_passes_the_progress_checks(task_type: str) -> None:
    # TaskContext validates each report, so a bad step would raise ValueError here.
    _, sink = await run(task_type, step_seconds=0)
    _, steps = HANDLERS[task_type]
    assert sink.calls == [(s.phase, s.progress_pct, s.message) for s in steps]
    assert all(0 <= pct < 100 for _, pct in sink.phases)


@pytest.mark.parametrize("task_type", list(HANDLERS))
async def test_company_is_named_in_the_summary(task_type: str) -> None:
    result, _ = await run(task_type, step_seconds=0, company="Acme")
    assert "Acme" in result.result_data["summary"]
    default, _ = await run(task_type, step_seconds=0, company="   ")
    assert "your company" in default.result_data["summary"]


@pytest.mark.parametrize(("task_type", "step_name"), ALL_STEPS)
async def test_fail_at_fails_after_reporting_that_step(task_type: str, step_name: str) -> None:
    error, sink = await run_failing(task_type, step_seconds=0, fail_at=step_name)
    _, steps = HANDLERS[task_type]
    names = [step.name for step in steps]
    reached = steps[: names.index(step_name) + 1]
    assert sink.calls == [(s.phase, s.progress_pct, s.message) for s in reached]
    assert sink.calls[-1][0] == reached[-1].phase
    assert str(error) == f"Simulated failure at {step_name}"


@pytest.mark.parametrize("task_type", list(HANDLERS))
@pytest.mark.parametrize("fail_at", ["nowhere", "complete", "", 3, ["starting"]])
async def test_unknown_fail_at_fails_before_any_progress(task_type: str, fail_at: Any) -> None:
    error, sink = await run_failing(task_type, step_seconds=0, fail_at=fail_at)
    assert sink.calls == []
    assert "params.fail_at must be one of" in str(error)
    _, steps = HANDLERS[task_type]
    for step in steps:
        assert step.name in str(error)


@pytest.mark.parametrize("task_type", list(HANDLERS))
@pytest.mark.parametrize(
    "step_seconds", ["1", "fast", None, True, False, [1], {"s": 1}, float("nan"), float("inf")]
)
async def test_non_numeric_step_seconds_fails_before_any_progress(
    task_type: str, step_seconds: Any
) -> None:
    error, sink = await run_failing(task_type, step_seconds=step_seconds)
    assert sink.calls == []
    assert "params.step_seconds must be a number" in str(error)


@pytest.mark.parametrize("task_type", list(HANDLERS))
@pytest.mark.parametrize("step_seconds", [-1, -0.001, 3600.5, 10**9])
async def test_out_of_range_step_seconds_fails_before_any_progress(
    task_type: str, step_seconds: float
) -> None:
    error, sink = await run_failing(task_type, step_seconds=step_seconds)
    assert sink.calls == []
    assert "params.step_seconds must be from 0 to 3600" in str(error)


async def test_step_seconds_checked_before_fail_at() -> None:
    error, sink = await run_failing("validation_kit", step_seconds=-1, fail_at="nowhere")
    assert sink.calls == []
    assert "step_seconds" in str(error)


def test_default_step_seconds_is_two() -> None:
    assert DEFAULT_STEP_SECONDS == 2
    assert builtin._step_seconds({}) == 2.0
    assert builtin._step_seconds({"step_seconds": 0}) == 0.0
    assert builtin._step_seconds({"step_seconds": 3600}) == 3600.0


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the built-ins' sleeps instead of sleeping."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any, **kwargs: Any) -> None:
        recorded.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(builtin.asyncio, "sleep", fake_sleep)
    return recorded


async def test_default_step_seconds_is_the_time_per_step(sleeps: list[float]) -> None:
    await run("fs_research")
    assert sleeps == [DEFAULT_STEP_SECONDS] * len(FS_RESEARCH_STEPS)


async def test_step_seconds_is_the_time_per_step(sleeps: list[float]) -> None:
    await run("validation_kit", step_seconds=0.25)
    assert sleeps == [0.25, 0.25, 0.25]


async def test_no_sleep_after_the_failing_step(sleeps: list[float]) -> None:
    await run_failing("validation_kit", step_seconds=1, fail_at="research_plan")
    assert sleeps == [1.0]
