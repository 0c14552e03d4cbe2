"""The handler API: progress checks, labels, the timeout error, the registry and its loading."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from praxiom_progress.runner.handlers import (
    HandlerRegistry,
    TaskContext,
    TaskModuleError,
    TaskResult,
    check_progress,
    load_registry,
    task_label,
    timeout_error,
)
from praxiom_progress.taskstate.settings import Settings


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    async def __call__(self, phase: str, progress_pct: int, message: str) -> None:
        self.calls.append((phase, progress_pct, message))


def make_context(sink: RecordingSink, task_type: str = "validation_kit") -> TaskContext:
    return TaskContext(task_id=uuid4(), task_type=task_type, params={}, sink=sink)


async def noop(task: TaskContext) -> dict[str, Any]:
    return {}


async def other(task: TaskContext) -> TaskResult:
    return TaskResult({"x": 1})


BAD_PROGRESS = [
    pytest.param("running", -1, "m", id="pct-negative"),
    pytest.param("running", 101, "m", id="pct-101"),
    # A float is rounded (issue 13), but only one from 0 to 100.
    pytest.param("running", 100.5, "m", id="pct-float-over-100"),
    pytest.param("running", -0.1, "m", id="pct-float-negative"),
    pytest.param("running", float("nan"), "m", id="pct-nan"),
    pytest.param("running", float("inf"), "m", id="pct-inf"),
    pytest.param("running", True, "m", id="pct-bool"),
    pytest.param("running", "50", "m", id="pct-string"),
    pytest.param("running", None, "m", id="pct-none"),
    pytest.param(None, 50, "m", id="phase-none"),
    pytest.param(5, 50, "m", id="phase-int"),
    pytest.param("", 50, "m", id="phase-empty"),
    pytest.param("   ", 50, "m", id="phase-blank"),
    pytest.param("p" * 101, 50, "m", id="phase-too-long"),
    pytest.param("running", 50, None, id="message-none"),
    pytest.param("running", 50, 42, id="message-int"),
    pytest.param("running", 50, b"bytes", id="message-bytes"),
    pytest.param("running", 50, "m" * 2001, id="message-too-long"),
]


@pytest.mark.parametrize(("phase", "pct", "message"), BAD_PROGRESS)
def test_check_progress_rejects(phase: Any, pct: Any, message: Any) -> None:
    with pytest.raises(ValueError):
        check_progress(phase, pct, message)


@pytest.mark.parametrize(("phase", "pct", "message"), BAD_PROGRESS)
async def test_report_progress_rejects_without_calling_the_sink(
    phase: Any, pct: Any, message: Any
) -> None:
    sink = RecordingSink()
    with pytest.raises(ValueError):
        await make_context(sink).report_progress(phase, pct, message)
    assert sink.calls == []


@pytest.mark.parametrize(
    ("pct", "written"), [(12.5, 12), (12.51, 13), (99.6, 100), (0.0, 0), (100.0, 100), (7, 7)]
)
async def test_a_float_percentage_is_rounded(pct: float, written: int) -> None:
    """`done / total * 100` is what handlers have (issue 13: 12.5 failed the whole task)."""
    assert check_progress("export", pct, "m") == written
    sink = RecordingSink()
    await make_context(sink).report_progress("export", pct, "m")
    assert sink.calls == [("export", written, "m")]
    assert type(sink.calls[0][1]) is int


def test_check_progress_error_names_the_argument() -> None:
    with pytest.raises(ValueError, match="progress_pct"):
        check_progress("running", 101, "m")
    with pytest.raises(ValueError, match="phase"):
        check_progress("", 1, "m")
    with pytest.raises(ValueError, match="message"):
        check_progress("running", 1, 7)


@pytest.mark.parametrize(
    ("phase", "pct", "message"),
    [
        ("running", 0, ""),
        ("running", 100, "done"),
        ("p" * 100, 50, "m" * 2000),
        ("research_plan", 50, "Building your research plan..."),
    ],
)
async def test_valid_progress_calls_the_sink_once(phase: str, pct: int, message: str) -> None:
    check_progress(phase, pct, message)
    sink = RecordingSink()
    await make_context(sink).report_progress(phase, pct, message)
    assert sink.calls == [(phase, pct, message)]


def test_context_keeps_identity_and_params() -> None:
    task_id = uuid4()
    params = {"step_seconds": 0}
    task = TaskContext(task_id=task_id, task_type="synthesis", params=params, sink=RecordingSink())
    assert task.task_id == task_id
    assert task.task_type == "synthesis"
    assert task.params == {"step_seconds": 0}


@pytest.mark.parametrize(
    ("task_type", "label"),
    [
        ("validation_kit", "Validation Kit"),
        ("synthesis", "Synthesis"),
        ("deep_dive", "Deep Dive"),
        ("research", "Research"),
    ],
)
def test_task_label(task_type: str, label: str) -> None:
    assert task_label(task_type) == label


def test_the_spec_labels_are_registered_by_the_builtin_module_only() -> None:
    """`FS-Research` is not a title-cased name: runner/builtin.py registers it, and nothing
    else in the runner knows it (the catalogue carries it to the gateway)."""
    assert task_label("fs_research") == "Fs Research"
    builtin = load_registry(("praxiom_progress.runner.builtin",))
    assert builtin.label_for("fs_research") == "FS-Research"
    assert builtin.label_for("validation_kit") == "Validation Kit"


def test_timeout_error_matches_the_spec() -> None:
    assert timeout_error("Validation Kit", 240) == "Validation Kit task timed out after 240s"
    assert timeout_error("Validation Kit", 240.0) == "Validation Kit task timed out after 240s"
    assert timeout_error("FS-Research", 600.0) == "FS-Research task timed out after 600s"
    assert timeout_error("Validation Kit", 0.5) == "Validation Kit task timed out after 0.5s"


# -- the registry ---------------------------------------------------------------------------


def test_register_as_a_call() -> None:
    registry = HandlerRegistry()
    returned = registry.register("deep_dive", noop)
    assert returned is noop
    handler = registry.get("deep_dive")
    assert handler is not None
    assert handler.run is noop
    assert handler.task_type == "deep_dive"
    assert handler.label == "Deep Dive"
    assert handler.timeout_s is None
    assert "deep_dive" in registry
    assert list(registry) == ["deep_dive"]
    assert len(registry) == 1


def test_register_as_a_decorator() -> None:
    registry = HandlerRegistry()

    @registry.register("deep_dive", label="Deep-Dive Report", timeout_s=12)
    async def deep_dive(task: TaskContext) -> dict[str, Any]:
        return {}

    handler = registry.get("deep_dive")
    assert handler is not None
    assert handler.run is deep_dive  # the decorator returns the function unchanged
    assert handler.label == "Deep-Dive Report"
    assert handler.timeout_s == 12
    assert registry.label_for("deep_dive") == "Deep-Dive Report"


def test_get_and_label_for_unknown_types() -> None:
    registry = HandlerRegistry()
    assert registry.get("nope") is None
    assert "nope" not in registry
    assert registry.label_for("deep_dive") == "Deep Dive"


def test_duplicate_registration_raises_and_keeps_the_first() -> None:
    registry = HandlerRegistry()
    registry.register("deep_dive", noop)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("deep_dive", other)
    handler = registry.get("deep_dive")
    assert handler is not None and handler.run is noop
    assert len(registry) == 1


def test_duplicate_registration_via_decorator_raises_before_decorating() -> None:
    registry = HandlerRegistry()
    registry.register("deep_dive", noop)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("deep_dive")


@pytest.mark.parametrize(
    "task_type",
    ["", "Deep_Dive", "deep-dive", "1st", "_private", "deep dive", "a" * 65, "café"],
)
def test_bad_type_name_raises(task_type: str) -> None:
    registry = HandlerRegistry()
    with pytest.raises(ValueError, match="task type"):
        registry.register(task_type, noop)
    assert len(registry) == 0


def test_longest_allowed_type_name() -> None:
    registry = HandlerRegistry()
    registry.register("a" * 64, noop)
    assert "a" * 64 in registry


@pytest.mark.parametrize("timeout_s", [0, -1, -0.5])
def test_bad_handler_timeout_raises(timeout_s: float) -> None:
    registry = HandlerRegistry()
    with pytest.raises(ValueError, match="timeout_s"):
        registry.register("deep_dive", noop, timeout_s=timeout_s)
    assert "deep_dive" not in registry


def test_timeouts_resolution_order() -> None:
    registry = HandlerRegistry()
    registry.register("validation_kit", noop, timeout_s=5)  # TASK_TIMEOUTS names it: 240 wins
    registry.register("fs_research", noop)  # TASK_TIMEOUTS names it: 600
    registry.register("deep_dive", noop, timeout_s=7)  # not named: the handler's own
    registry.register("synthesis", noop)  # neither: TASK_TIMEOUTS default
    assert registry.timeouts(Settings()) == {
        "validation_kit": 240.0,
        "fs_research": 600.0,
        "deep_dive": 7,
        "synthesis": 300.0,
    }


def test_timeouts_follow_task_timeouts_overrides() -> None:
    registry = HandlerRegistry()
    registry.register("deep_dive", noop, timeout_s=7)
    registry.register("synthesis", noop, timeout_s=8)
    registry.register("research", noop)
    settings = Settings.from_env({"TASK_TIMEOUTS": "deep_dive=70,default=30"})
    assert registry.timeouts(settings) == {"deep_dive": 70.0, "synthesis": 8, "research": 30.0}


def test_timeouts_of_an_empty_registry() -> None:
    assert HandlerRegistry().timeouts(Settings()) == {}


# -- loading from RUNNER_TASK_MODULES --------------------------------------------------------


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_load_registry_builtin() -> None:
    registry = load_registry(("praxiom_progress.runner.builtin",))
    assert set(registry) == {"validation_kit", "fs_research", "research", "synthesis"}
    assert registry.label_for("validation_kit") == "Validation Kit"
    assert registry.label_for("fs_research") == "FS-Research"


def test_load_registry_combines_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(registry: HandlerRegistry) -> None:
        registry.register("deep_dive", noop)

    _fake_module(monkeypatch, "praxiom_unit_extra_tasks", register=register)
    registry = load_registry(("praxiom_progress.runner.builtin", "praxiom_unit_extra_tasks"))
    assert set(registry) == {"validation_kit", "fs_research", "research", "synthesis", "deep_dive"}


def test_missing_module_raises() -> None:
    with pytest.raises(TaskModuleError, match="cannot import 'praxiom_no_such_module'") as caught:
        load_registry(("praxiom_no_such_module",))
    assert "RUNNER_TASK_MODULES" in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)


def test_missing_submodule_raises() -> None:
    with pytest.raises(
        TaskModuleError, match=r"cannot import 'praxiom_progress\.runner\.builtin\.nope'"
    ):
        load_registry(("praxiom_progress.runner.builtin.nope",))


def test_module_raising_on_import_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A broken module (not merely a missing one) is reported the same way, with its error.
    (tmp_path / "praxiom_unit_broken_tasks.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "praxiom_unit_broken_tasks", raising=False)
    with pytest.raises(TaskModuleError, match="cannot import 'praxiom_unit_broken_tasks': boom"):
        load_registry(("praxiom_unit_broken_tasks",))


def test_module_without_register_raises() -> None:
    with pytest.raises(TaskModuleError, match=r"'json' has no register\(registry\) function"):
        load_registry(("json",))


def test_module_with_non_callable_register_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, "praxiom_unit_bad_register", register="not a function")
    with pytest.raises(TaskModuleError, match="has no register"):
        load_registry(("praxiom_unit_bad_register",))


def test_no_modules_raises() -> None:
    with pytest.raises(TaskModuleError, match="registered no handler"):
        load_registry(())


def test_module_registering_nothing_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, "praxiom_unit_empty_tasks", register=lambda registry: None)
    with pytest.raises(TaskModuleError, match="registered no handler"):
        load_registry(("praxiom_unit_empty_tasks",))


def test_register_value_error_becomes_task_module_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(registry: HandlerRegistry) -> None:
        registry.register("Bad-Name", noop)

    _fake_module(monkeypatch, "praxiom_unit_bad_tasks", register=register)
    with pytest.raises(TaskModuleError, match="'praxiom_unit_bad_tasks'") as caught:
        load_registry(("praxiom_unit_bad_tasks",))
    assert isinstance(caught.value.__cause__, ValueError)


def test_any_error_in_register_becomes_task_module_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(registry: HandlerRegistry) -> None:
        raise TypeError("register() got an unexpected keyword")

    _fake_module(monkeypatch, "praxiom_unit_broken_tasks", register=register)
    with pytest.raises(TaskModuleError, match="unexpected keyword"):
        load_registry(("praxiom_unit_broken_tasks",))


def test_the_same_type_from_two_modules_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(registry: HandlerRegistry) -> None:
        registry.register("synthesis", noop)

    _fake_module(monkeypatch, "praxiom_unit_dup_tasks", register=register)
    with pytest.raises(TaskModuleError, match="already registered"):
        load_registry(("praxiom_progress.runner.builtin", "praxiom_unit_dup_tasks"))
