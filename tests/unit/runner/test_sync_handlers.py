"""Plain `def` handlers run in a thread: their reports are plain calls that wait for the write,
their TaskLost surfaces in the thread, and they never block the loop; what every handler knows
of its task (workspace, spawner, attempt, shared state) and its params loaded by its schema."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from marshmallow import Schema, fields

from praxiom_progress.runner.handlers import SyncTaskContext, TaskContext, TaskLost, TaskResult
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit


@pytest.fixture
def kit(store: FakeRunnerStore, publisher: RecordingPublisher) -> HandlerKit:
    return HandlerKit(store, publisher, state={"client": "shared"})


async def test_a_plain_def_runs_in_a_thread_and_each_report_returns_once_written(
    kit: HandlerKit,
) -> None:
    seen: list[tuple[str, int, bool]] = []

    def run(task: SyncTaskContext) -> TaskResult:
        for pct in (20, 70):
            task.report_progress("exporting", pct, f"{pct} %")
            stored = kit.task(task.task_id)  # written before the call returned
            seen.append((stored.phase, stored.progress_pct, threading.current_thread().daemon))
        return TaskResult({"rows": 2}, message="Exported")

    held = await kit.start(run)
    stored = await kit.ended(held)
    assert seen == [("exporting", 20, True), ("exporting", 70, True)]
    assert (stored.status, stored.message, stored.result_data) == (
        "completed",
        "Exported",
        {"rows": 2},
    )
    assert [p.progress_pct for p in kit.publisher.of(held.task_id)] == [0, 20, 70, 100]


async def test_a_handler_knows_its_workspace_spawner_attempt_and_the_runner_state(
    kit: HandlerKit,
) -> None:
    def sync_run(task: SyncTaskContext) -> dict[str, Any]:
        return _facts(task)

    async def async_run(task: TaskContext) -> dict[str, Any]:
        return _facts(task)

    for run in (sync_run, async_run):
        held = await kit.start(run, spawned_by="service:billing")
        stored = await kit.ended(held)
        assert stored.status == TaskStatus.COMPLETED, stored.error
        assert stored.result_data == {
            "workspace_id": str(stored.workspace_id),
            "spawned_by": "service:billing",
            "attempt": 1,
            "state": {"client": "shared"},
        }


def _facts(task: SyncTaskContext | TaskContext) -> dict[str, Any]:
    return {
        "workspace_id": str(task.workspace_id),
        "spawned_by": task.spawned_by,
        "attempt": task.attempt,
        "state": dict(task.state),
    }


async def test_a_plain_def_s_next_report_raises_task_lost_once_it_is_cancelled(
    kit: HandlerKit,
) -> None:
    reported, outcome = threading.Event(), []
    release = threading.Event()

    def run(task: SyncTaskContext) -> dict[str, Any]:
        task.report_progress("working", 10, "Started")
        reported.set()
        release.wait(5)
        try:
            task.report_progress("working", 90, "Too late")
        except TaskLost:
            outcome.append("lost")
            raise
        outcome.append("went on")
        return {}

    held = await kit.start(run)
    assert await asyncio.to_thread(reported.wait, 5)
    kit.store.cancel(held.task_id, notify=False)
    cancelled = kit.task(held.task_id)
    release.set()
    await kit.ended(held)
    await asyncio.to_thread(lambda: [time.sleep(0.01) for _ in range(50) if not outcome])
    assert outcome == ["lost"]
    assert kit.task(held.task_id) == cancelled
    assert kit.stats.withdrawn == 1


async def test_a_plain_def_that_times_out_fails_the_task_and_its_next_report_is_lost(
    kit: HandlerKit,
) -> None:
    release, outcome = threading.Event(), []

    def run(task: SyncTaskContext) -> dict[str, Any]:
        task.report_progress("working", 30, "Working")
        release.wait(5)  # blocking code: the thread cannot be stopped, only abandoned
        try:
            task.report_progress("working", 90, "Too late")
        except TaskLost:
            outcome.append("lost")
        return {}

    held = await kit.start(run, timeout_s=0.2)
    stored = await kit.ended(held, 2)
    assert (stored.status, stored.error) == ("failed", "Sample task timed out after 0.2s")
    assert kit.executor.invoker.threads.alive == 1  # abandoned, still running
    release.set()
    for _ in range(100):
        if outcome and kit.executor.invoker.threads.alive == 0:
            break
        await asyncio.sleep(0.01)
    assert outcome == ["lost"] and kit.executor.invoker.threads.alive == 0
    assert kit.task(held.task_id) == stored  # nothing written after the end


async def test_a_plain_def_s_error_fails_the_task_with_one_line(kit: HandlerKit) -> None:
    def run(task: SyncTaskContext) -> dict[str, Any]:
        raise ConnectionError("upstream closed\nmore")

    stored = await kit.ended(await kit.start(run))
    assert (stored.status, stored.error) == ("failed", "ConnectionError: upstream closed")


async def test_a_sleeping_plain_def_does_not_delay_an_async_sibling(kit: HandlerKit) -> None:
    """Acceptance: while a sync handler sleeps 2 s, a sibling's 0.5 s steps are not delayed
    by more than 0.1 s."""
    steps: list[float] = []

    def sleeper(task: SyncTaskContext) -> dict[str, Any]:
        time.sleep(2)
        return {}

    async def stepper(task: TaskContext) -> dict[str, Any]:
        for _ in range(4):
            started = time.monotonic()
            await asyncio.sleep(0.5)
            steps.append(time.monotonic() - started)
        return {}

    blocking = await kit.start(sleeper)
    sibling = await kit.start(stepper)
    await kit.ended(sibling, 5)
    await kit.ended(blocking, 5)
    assert len(steps) == 4 and max(steps) < 0.6, steps


class ExportParams(Schema):
    rows = fields.Integer(required=True)
    since = fields.Date(load_default=None)


async def test_params_arrive_as_the_schema_loaded_them(kit: HandlerKit) -> None:
    def run(task: SyncTaskContext) -> dict[str, Any]:
        return {"rows": task.params["rows"], "since": type(task.params["since"]).__name__}

    held = await kit.start(
        run, task_params={"rows": "12", "since": "2026-11-01"}, params=ExportParams
    )
    stored = await kit.ended(held)
    assert stored.result_data == {"rows": 12, "since": "date"}


async def test_params_that_do_not_load_fail_the_task_naming_the_field(kit: HandlerKit) -> None:
    ran: list[bool] = []

    async def run(task: TaskContext) -> dict[str, Any]:
        ran.append(True)
        return {}

    held = await kit.start(run, task_params={"rows": "many", "extra": 1}, params=ExportParams)
    stored = await kit.ended(held)
    assert stored.status == TaskStatus.FAILED and ran == []
    assert stored.error == (
        "Invalid params: params.rows: Not a valid integer.; params.extra: Unknown field."
    )


async def test_a_plain_def_that_returns_a_coroutine_has_it_awaited(kit: HandlerKit) -> None:
    async def later(task: TaskContext) -> dict[str, Any]:
        return {"awaited": True}

    def run(task: Any) -> Any:
        return later(task)

    stored = await kit.ended(await kit.start(run))
    assert (stored.status, stored.result_data) == ("completed", {"awaited": True})
