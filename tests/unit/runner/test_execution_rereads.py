"""A task `runner.execution` no longer holds. When its end or retry matches nothing, the row
is re-read to learn whether our own write committed (its answer lost) or the task is gone:
only a row that is ours, in the state our write leaves, is counted and published; anything
else (a row deleted with its workspace, reaped, ended or handed back elsewhere) is withdrawn.
A handler whose report finds the task gone is told why, and so is every later report."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any
from uuid import uuid4

import pytest

from praxiom_progress.runner.execution import StopReason
from praxiom_progress.runner.handlers import TaskContext, TaskFailed, TaskLost
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit


@pytest.fixture
def bench(store: FakeRunnerStore, publisher: RecordingPublisher) -> HandlerKit:
    return HandlerKit(store, publisher)


def withdrawn(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "withdrawn"]


@pytest.mark.parametrize("ending", ["completed", "failed", "retried"])
async def test_a_task_deleted_while_its_handler_ran_is_withdrawn(
    bench: HandlerKit, ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        del bench.store.tasks[task.task_id]  # its workspace deleted: the row cascades away
        if ending == "failed":
            raise TaskFailed("no")
        if ending == "retried":
            raise ConnectionError("reset")
        return {}

    with caplog.at_level(logging.INFO, logger="runner"):
        held = await bench.start(run, retries=1, retry_backoff_s=0.01)
        held.max_attempts = 2  # as a claim of a task with a retry left sets it
        assert held.job is not None
        await held.job
    what = "retry" if ending == "retried" else "end"
    assert withdrawn(caplog) == [
        f"task {held.task_id} was cancelled or reaped before its {what} was recorded"
    ]
    assert (bench.stats.withdrawn, bench.stats.completed, bench.stats.failed) == (1, 0, 0)
    assert bench.stats.retried == 0
    assert [p.status for p in bench.publisher.of(held.task_id)] == ["running"]  # the claim


async def test_a_task_reaped_while_its_handler_failed_is_not_taken_for_our_failure(
    bench: HandlerKit,
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        row = bench.store.tasks[task.task_id]  # reaped: failed, our claim token still on it
        bench.store.tasks[task.task_id] = dataclasses.replace(
            row, status=TaskStatus.FAILED, error="Task timed out (no heartbeat)"
        )
        raise TaskFailed("no")

    held = await bench.start(run)
    ended = await bench.ended(held)
    assert (ended.status, ended.error) == ("failed", "Task timed out (no heartbeat)")
    assert (bench.stats.withdrawn, bench.stats.failed) == (1, 0)
    assert [p.status for p in bench.publisher.of(held.task_id)] == ["running"]


async def test_a_task_another_runner_claimed_and_completed_is_not_taken_for_ours(
    bench: HandlerKit,
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        row = bench.store.tasks[task.task_id]  # reaped, claimed again elsewhere, completed
        bench.store.tasks[task.task_id] = dataclasses.replace(
            row, status=TaskStatus.COMPLETED, claim_token=uuid4()
        )
        return {}

    held = await bench.start(run)
    ended = await bench.ended(held)
    assert ended.claim_token != held.claim_token
    assert (bench.stats.withdrawn, bench.stats.completed) == (1, 0)
    assert [p.status for p in bench.publisher.of(held.task_id)] == ["running"]


async def test_a_task_handed_back_by_another_while_its_handler_failed_is_not_our_retry(
    bench: HandlerKit,
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        row = bench.store.tasks[task.task_id]  # reaped and handed back: pending, not ours
        bench.store.tasks[task.task_id] = dataclasses.replace(
            row, status=TaskStatus.PENDING, claim_token=None, message="Task re-queued"
        )
        raise ConnectionError("reset")

    held = await bench.start(run, retries=1, retry_backoff_s=0.01)
    held.max_attempts = 2
    ended = await bench.ended(held)
    assert (ended.status, ended.message) == ("pending", "Task re-queued")
    assert (bench.stats.withdrawn, bench.stats.retried) == (1, 0)
    assert [p.status for p in bench.publisher.of(held.task_id)] == ["running"]


async def test_a_retry_whose_answer_was_lost_is_ours_and_counts_once(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        raise ConnectionError("reset")

    bench.stats.retried = 2  # counted on top of what the runner held
    bench.store.lose_answer("retry_task")
    held = await bench.start(run, retries=1, retry_backoff_s=0.01)
    held.max_attempts = 2
    ended = await bench.ended(held)
    assert ended.status == "pending" and ended.message.startswith("Retrying in ")
    assert (bench.stats.retried, bench.stats.withdrawn) == (3, 0)
    assert bench.publisher.of(held.task_id)[-1] == ended  # ours: published


async def test_a_handler_whose_report_finds_its_task_gone_is_told_why_each_time(
    bench: HandlerKit, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[str] = []

    async def run(task: TaskContext) -> dict[str, Any]:
        bench.store.cancel(task.task_id, notify=False)  # by a user, just now
        for _ in range(2):
            try:
                await task.report_progress("work", 50, "Half")
            except TaskLost as exc:
                told.append(str(exc))
        return {}  # swallowed TaskLost and returned anyway: nothing is written

    with caplog.at_level(logging.INFO, logger="runner"):
        held = await bench.start(run)
        ended = await bench.ended(held)
    assert told == [
        f"task {held.task_id} was cancelled or reaped",
        f"task {held.task_id} is no longer held by this runner",
    ]
    assert ended.status == "cancelled"
    assert withdrawn(caplog) == [
        f"task {held.task_id} was cancelled or reaped while its handler ran"
    ]
    assert (bench.stats.withdrawn, bench.stats.completed) == (1, 0)


async def test_a_withdrawn_task_s_kept_report_is_forgotten_not_written(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    bench = HandlerKit(store, publisher, min_interval_s=3600.0)  # the second report is kept
    reported = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("work", 10, "Started")
        await task.report_progress("work", 20, "Further")
        reported.set()
        await asyncio.sleep(3600)
        return {}

    held = await bench.start(run)
    await reported.wait()
    store.cancel(held.task_id, notify=False)
    held.withdraw(StopReason.WITHDRAWN)
    await bench.ended(held)
    assert [[r.progress_pct for r in c["reports"]] for c in store.called("report_progress")] == [
        [10]
    ]
    # Nothing is left of it in the throttle: finishing it writes nothing and finds it held.
    assert await bench.throttle.finish(held.task_id) is True
    assert len(store.called("report_progress")) == 1
