"""The runner in-process against real PostgreSQL and Redis: runs, progress, ends, withdrawals."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import pytest

from praxiom_progress.runner.execution import REQUEUED_MESSAGE
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext, TaskLost, TaskResult
from praxiom_progress.runner.worker import runner_lost_error
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import PAYLOAD_FIELDS, TaskPayloadSchema, task_payload
from praxiom_progress.taskstate.settings import parse_task_timeouts
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    EndlessTask,
    ProgressRecorder,
    RunnerHarness,
    builtin_registry,
    claim_by_hand,
    spawn,
    until_idle_and_listening,
    wait_for,
    wait_for_status,
)

TERMINAL = {"completed", "failed", "cancelled"}

NAN = float("nan")
SPEC_PHASES = {
    "validation_kit": [("assumption_map", 15), ("research_plan", 50), ("interview_guide", 80)],
    "fs_research": [
        ("starting", 5),
        ("running", 25),
        ("phase_1_complete", 50),
        ("running", 70),
        ("phase_2_complete", 90),
    ],
    "research": [("running", 10), ("running", 40), ("running", 75)],
    "synthesis": [("running", 10), ("running", 45), ("running", 80)],
}


def registry_of(**handlers: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    for task_type, run in handlers.items():
        registry.register(task_type, run)
    return registry


async def settle(recorder: ProgressRecorder, task_id: UUID, version: int) -> list[dict[str, Any]]:
    """Wait until the recorder holds the payload of `version` for the task."""

    async def arrived() -> bool:
        return any(p["version"] == version for p in recorder.of(task_id))

    await wait_for(arrived, 5)
    return recorder.of(task_id)


@pytest.mark.parametrize("task_type", sorted(SPEC_PHASES))
async def test_builtin_handler_walks_the_spec_phases_and_final_row_equals_last_publish(
    task_type: str,
    task_store: TaskStore,
    workspace_id: UUID,
    runners: RunnerHarness,
    recorder: ProgressRecorder,
) -> None:
    # Every report is written, even the ones that repeat a phase, as the spec's 2 s steps are
    # (0.3 s steps against the 0.25 s throttle left a loaded machine 50 ms of margin): the
    # throttle is tested on its own (test_retry_and_throttle.py).
    runners.start(builtin_registry(), runner_progress_min_interval_s=0.0)
    task_id = await spawn(task_store, workspace_id, task_type, step_seconds=0.05)
    final = await wait_for_status(task_store, task_id, TERMINAL)
    published = await settle(recorder, task_id, final.version)

    versions = [p["version"] for p in published]
    assert versions == sorted(set(versions)), "versions must strictly increase"
    assert published[-1] == task_payload(final)
    # Just claimed: running, in phase running at 0 %, "Started" (issue 13; it was "pending").
    first = published[0]
    assert (first["status"], first["phase"], first["progress_pct"]) == ("running", "running", 0)
    assert first["message"] == "Started"
    running = [(p["phase"], p["progress_pct"]) for p in published if p["status"] == "running"]
    assert running[1:] == SPEC_PHASES[task_type]
    assert (final.status, final.phase) == ("completed", "complete")
    assert final.progress_pct == 100
    assert final.completed_at is not None and final.error is None
    assert "summary" in final.result_data and final.result_data["document_ids"]
    schema = TaskPayloadSchema()
    for payload in published:
        assert list(payload) == list(PAYLOAD_FIELDS)
        schema.load(payload)  # raises on any field of the wrong type


async def test_completed_payload_matches_the_spec_example_shape(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(task_store, workspace_id, "validation_kit", step_seconds=0)
    final = task_payload(await wait_for_status(task_store, task_id, TERMINAL))
    assert final["message"] == "Your Validation Kit is ready — 3 documents generated."
    assert len(final["result_data"]["document_ids"]) == 3
    assert final["started_at"].endswith("Z") and final["completed_at"].endswith("Z")
    assert final["heartbeat_at"] == final["completed_at"]


async def test_progress_is_merged_into_result_data_while_running(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    gate = asyncio.Event()

    async def paused(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("research_plan", 50, "Building your research plan...")
        await gate.wait()
        return {}

    runners.start(registry_of(paused=paused))
    task_id = await spawn(task_store, workspace_id, "paused")

    async def reported() -> dict[str, Any] | None:
        row = await task_store.get_task(task_id)
        return row if row and row.phase == "research_plan" else None

    row = await wait_for(reported)
    assert row.result_data == {
        "phase": "research_plan",
        "progress_pct": 50,
        "message": "Building your research plan...",
    }
    gate.set()
    await wait_for_status(task_store, task_id, {"completed"})


async def test_fail_at_fails_with_a_one_line_error_keeping_phase_and_pct(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness, recorder: ProgressRecorder
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(
        task_store, workspace_id, "validation_kit", step_seconds=0, fail_at="research_plan"
    )
    final = await wait_for_status(task_store, task_id, TERMINAL)
    assert final.status == "failed"
    assert final.error == "Simulated failure at research_plan"
    assert (final.phase, final.progress_pct) == ("research_plan", 50)
    assert final.message == "Building your research plan..."
    assert final.completed_at is not None
    published = await settle(recorder, task_id, final.version)
    assert published[-1]["status"] == "failed"


async def test_handler_exception_fails_the_task_without_a_traceback_in_the_payload(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    async def broken(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("running", 30, "Working")
        raise RuntimeError("the model answered nonsense\nsecond line")

    runners.start(registry_of(broken=broken))
    task_id = await spawn(task_store, workspace_id, "broken")
    final = await wait_for_status(task_store, task_id, TERMINAL)
    assert final.status == "failed"
    assert final.error == "RuntimeError: the model answered nonsense"
    assert (final.phase, final.progress_pct) == ("running", 30)


@pytest.mark.parametrize(
    ("task_type", "timeouts", "expected"),
    [
        ("validation_kit", "validation_kit=0.3", "Validation Kit task timed out after 0.3s"),
        ("fs_research", "fs_research=0.4", "FS-Research task timed out after 0.4s"),
        ("synthesis", "default=0.3", "Synthesis task timed out after 0.3s"),
    ],
)
async def test_timeout_fails_the_task_with_the_exact_message(
    task_type: str,
    timeouts: str,
    expected: str,
    task_store: TaskStore,
    workspace_id: UUID,
    runners: RunnerHarness,
) -> None:
    runners.start(builtin_registry(), task_timeouts=parse_task_timeouts(timeouts))
    task_id = await spawn(task_store, workspace_id, task_type, step_seconds=5)
    final = await wait_for_status(task_store, task_id, TERMINAL)
    assert final.status == "failed"
    assert final.error == expected
    assert final.phase != "complete"


async def test_bad_progress_raises_value_error_in_the_handler_and_writes_nothing(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    seen: list[str] = []
    versions: list[int] = []

    async def sloppy(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("first", 10, "ok")
        versions.append((await task_store.get_task(task.task_id)).version)
        # (A float in range is rounded since issue 13; NaN is not a percentage.)
        for bad in [("first", 150, "x"), ("first", -1, "x"), (7, 20, "x"), ("first", NAN, "x")]:
            try:
                await task.report_progress(*bad)  # type: ignore[arg-type]
            except ValueError as exc:
                seen.append(str(exc))
        versions.append((await task_store.get_task(task.task_id)).version)
        return {"done": True}

    runners.start(registry_of(sloppy=sloppy))
    task_id = await spawn(task_store, workspace_id, "sloppy")
    final = await wait_for_status(task_store, task_id, TERMINAL)
    assert final.status == "completed"
    assert len(seen) == 4 and all("progress_pct" in s or "phase" in s for s in seen)
    assert versions[0] == versions[1], "a rejected report must not write"


async def test_cancelling_a_pending_task_means_it_never_starts(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    started: list[UUID] = []

    async def tracked(task: TaskContext) -> dict[str, Any]:
        started.append(task.task_id)
        return {}

    task_id = await spawn(task_store, workspace_id, "tracked")
    cancelled = await task_store.cancel_task(task_id)
    assert cancelled.status == "cancelled"
    runners.start(registry_of(tracked=tracked))
    other = await spawn(task_store, workspace_id, "tracked")  # proves the runner is working
    await wait_for_status(task_store, other, {"completed"})
    row = await task_store.get_task(task_id)
    assert row.status == "cancelled" and row.started_at is None
    assert started == [other]


async def test_cancelling_a_running_task_stops_its_handler_within_a_second(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness, recorder: ProgressRecorder
) -> None:
    endless = EndlessTask()
    # A long heartbeat interval: only the NOTIFY can stop the handler this fast.
    runners.start(endless.registry(), runner_heartbeat_interval_s=30)
    task_id = await spawn(task_store, workspace_id, endless.task_type)

    async def working() -> bool:
        row = await task_store.get_task(task_id)
        return row.phase == "running" and row.progress_pct == 40

    await wait_for(working)
    cancelled_at = time.monotonic()
    cancelled = await task_store.cancel_task(task_id)
    await wait_for(lambda: asyncio.sleep(0, result=endless.stopped_at), timeout_s=1.0)
    assert endless.stopped_at is not None and endless.stopped_at - cancelled_at < 1.0
    await asyncio.sleep(0.5)
    row = await task_store.get_task(task_id)
    assert row.status == "cancelled" and row.version == cancelled.version
    assert (row.phase, row.progress_pct, row.error) == ("running", 40, None)


async def test_heartbeat_stops_a_handler_whose_row_was_cancelled_without_notification(
    task_store: TaskStore, db: Database, workspace_id: UUID, runners: RunnerHarness
) -> None:
    stopped = asyncio.Event()

    async def endless(task: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()
        return {}

    runners.start(registry_of(endless=endless))
    task_id = await spawn(task_store, workspace_id, "endless")
    await wait_for_status(task_store, task_id, {"running"})
    # Written behind the runner's back: no NOTIFY, so only the heartbeat can notice.
    await db.fetch_all(
        "UPDATE background_tasks SET status = 'cancelled', completed_at = now() WHERE id = %(id)s",
        {"id": task_id},
    )
    await asyncio.wait_for(stopped.wait(), 2.0)
    row = await task_store.get_task(task_id)
    assert row.status == "cancelled"


async def test_a_runner_that_lost_its_claim_never_overwrites_the_row(
    task_store: TaskStore,
    db: Database,
    workspace_id: UUID,
    runners: RunnerHarness,
) -> None:
    gate = asyncio.Event()
    outcome: list[str] = []

    async def blocked(task: TaskContext) -> TaskResult:
        await task.report_progress("running", 10, "Started")
        await gate.wait()
        try:
            # A new phase: written at once, not kept for the throttle's interval.
            await task.report_progress("finishing", 90, "Woke up")
        except TaskLost:
            outcome.append("lost")
            raise
        return TaskResult({"late": True})

    runners.start(registry_of(blocked=blocked), runner_heartbeat_interval_s=30)
    task_id = await spawn(task_store, workspace_id, "blocked")

    async def started() -> bool:
        return (await task_store.get_task(task_id)).progress_pct == 10

    await wait_for(started)
    await db.fetch_all(
        "UPDATE background_tasks SET status = 'failed', error = 'reaped', completed_at = now() "
        "WHERE id = %(id)s",
        {"id": task_id},
    )
    reaped = await task_store.get_task(task_id)
    gate.set()
    await wait_for(lambda: asyncio.sleep(0, result=outcome == ["lost"]))
    await asyncio.sleep(0.3)
    row = await task_store.get_task(task_id)
    assert row.version == reaped.version and row.error == "reaped"


async def test_reaper_fails_a_task_whose_runner_stopped_beating_and_publishes_it(
    task_store: TaskStore,
    db: Database,
    workspace_id: UUID,
    runners: RunnerHarness,
    recorder: ProgressRecorder,
) -> None:
    task_id = await spawn(task_store, workspace_id, "orphan")
    # A task claimed by a runner that died an hour ago.
    await claim_by_hand(
        db, task_id, runner_id="ghost", started_ago_s=3600, beat_ago_s=3600, timeout_s=86400
    )
    runner = runners.start(builtin_registry())
    final = await wait_for_status(task_store, task_id, TERMINAL, timeout_s=5)
    assert final.status == "failed"
    assert final.error == runner_lost_error(runner.settings.runner_stale_after_s)
    published = await settle(recorder, task_id, final.version)
    assert published[-1]["status"] == "failed"
    assert runner.stats.reaped == 1


async def test_reaper_fails_a_task_past_its_hard_deadline_with_the_timeout_error(
    task_store: TaskStore, db: Database, workspace_id: UUID, runners: RunnerHarness
) -> None:
    task_id = await spawn(task_store, workspace_id, "validation_kit")
    # Still beating, but started 300 s ago with a 240 s timeout: its runner is stuck.
    await claim_by_hand(
        db, task_id, runner_id="stuck", started_ago_s=300, beat_ago_s=0, timeout_s=240
    )
    runners.start(registry_of(other=lambda task: asyncio.sleep(0)))
    final = await wait_for_status(task_store, task_id, TERMINAL, timeout_s=5)
    assert final.error == "Validation Kit task timed out after 240s"


async def test_runner_runs_at_most_its_concurrency(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    active = 0
    peak = 0
    release = asyncio.Event()

    async def gated(task: TaskContext) -> dict[str, Any]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        return {}

    runners.start(registry_of(gated=gated), runner_concurrency=2)
    ids = [await spawn(task_store, workspace_id, "gated") for _ in range(5)]
    await wait_for(lambda: asyncio.sleep(0, result=active == 2))
    await asyncio.sleep(0.3)
    assert peak == 2
    release.set()
    for task_id in ids:
        await wait_for_status(task_store, task_id, {"completed"})
    assert peak == 2


async def test_a_task_inserted_without_notification_is_claimed_by_the_slow_poll(
    db: Database, task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    await until_idle_and_listening(runners.start(builtin_registry(), runner_poll_interval_s=0.3))
    row = await db.fetch_one(
        "INSERT INTO background_tasks (workspace_id, task_type, params) "
        "VALUES (%(ws)s, 'research', '{\"step_seconds\": 0}') RETURNING id",
        {"ws": workspace_id},
    )
    await wait_for_status(task_store, row["id"], {"completed"}, timeout_s=3)


async def test_runner_claims_only_types_it_has_handlers_for(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness
) -> None:
    runners.start(builtin_registry())
    unknown = await spawn(task_store, workspace_id, "no_such_handler")
    known = await spawn(task_store, workspace_id, "research", step_seconds=0)
    await wait_for_status(task_store, known, {"completed"})
    assert (await task_store.get_task(unknown)).status == "pending"


async def test_stop_requeues_tasks_that_outlast_the_grace_and_finishes_the_rest(
    task_store: TaskStore, workspace_id: UUID, runners: RunnerHarness, recorder: ProgressRecorder
) -> None:
    runner = runners.start(builtin_registry(), runner_shutdown_grace_s=0.8)
    slow = await spawn(task_store, workspace_id, "validation_kit", step_seconds=30)
    quick = await spawn(task_store, workspace_id, "research", step_seconds=0.1)
    await wait_for_status(task_store, slow, {"running"})
    await wait_for_status(task_store, quick, {"running"})
    await runners.stop_all(force=False)
    assert (await task_store.get_task(quick)).status == "completed"
    requeued = await task_store.get_task(slow)
    assert requeued.status == "pending"
    assert requeued.message == REQUEUED_MESSAGE
    assert requeued.claim_token is None and requeued.started_at is None
    published = await settle(recorder, slow, requeued.version)
    assert published[-1]["status"] == "pending"
    assert runner.stats.requeued == 1
