"""The runner's loops (`runner.worker`) on the in-memory store: claiming, the claim retry while
PostgreSQL is away, withdrawals by NOTIFY and by heartbeat, the reaper, and shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

import pytest

from praxiom_progress.runner.execution import REQUEUED_MESSAGE
from praxiom_progress.runner.handlers import TaskContext
from praxiom_progress.runner.worker import runner_lost_error
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus
from tests.conftest import wait_for
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.runner_kit import RunnerKit, registry_of


class Endless:
    """A handler that reports once, then works until it is cancelled, noting when."""

    def __init__(self) -> None:
        self.reported = asyncio.Event()
        self.stopped_at: float | None = None

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 40, "Working forever")
        self.reported.set()
        try:
            await asyncio.sleep(3600)
        finally:
            self.stopped_at = time.monotonic()
        return {}


#: The queries that write a task the runner holds.
WRITES = {"report_progress", "complete_task", "fail_task", "requeue_task"}


async def quick(task: TaskContext) -> dict[str, Any]:
    await task.report_progress("working", 50, "Half way")
    return {"done": True}


async def status_of(store: FakeRunnerStore, task_id: UUID, *statuses: str) -> Task:
    async def reached() -> Task | None:
        task = store.tasks[task_id]
        return task if task.status in statuses else None

    return await wait_for(reached, timeout_s=2, interval_s=0.005)


async def published_up_to(publisher: RecordingPublisher, task: Task) -> list[Task]:
    """What was published of the task once `task` was: persisted, then published, the publish
    follows the write by a loop step or more (runner.writer)."""

    async def reached() -> list[Task] | None:
        published = publisher.of(task.id)
        return published if published and published[-1] == task else None

    return await wait_for(reached, timeout_s=5, interval_s=0.005)


async def test_a_pending_task_is_claimed_run_and_published_in_order(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    task_id = store.add("quick")
    runner = runners.start(registry_of(quick=quick))
    final = await status_of(store, task_id, "completed")
    published = await published_up_to(publisher, final)
    assert [p.version for p in published] == [2, 3, final.version]
    assert (runner.stats.claimed, runner.stats.completed) == (1, 1)


async def test_the_runner_claims_only_types_it_has_handlers_for(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    unknown = store.add("no_such_handler")
    known = store.add("quick")
    runners.start(registry_of(quick=quick))
    await status_of(store, known, "completed")
    assert store.tasks[unknown].status == TaskStatus.PENDING


async def test_claims_retry_with_backoff_while_the_store_is_unavailable(
    store: FakeRunnerStore, runners: RunnerKit, caplog: pytest.LogCaptureFixture
) -> None:
    store.fail_next("claim_tasks", times=2)
    task_id = store.add("quick")
    with caplog.at_level(logging.WARNING, logger="runner"):
        started = time.monotonic()
        runners.start(registry_of(quick=quick))
        await status_of(store, task_id, "completed")
    waited = time.monotonic() - started

    assert len(store.called("claim_tasks")) >= 3  # two refused, then the one that claimed
    retries = [r.getMessage() for r in caplog.records if r.action == "claim_retry"]  # type: ignore[attr-defined]
    assert retries == [
        "claim failed, retrying in 0.1s: PostgreSQL unavailable (fake, claim_tasks)",
        "claim failed, retrying in 0.2s: PostgreSQL unavailable (fake, claim_tasks)",
    ]
    assert waited >= 0.3  # it backed off between the attempts, rather than spinning


async def test_a_stop_during_the_claim_backoff_ends_the_runner_at_once(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    store.fail_next("claim_tasks", times=100)
    runner = runners.start(registry_of(quick=quick), runner_poll_interval_s=10)
    await wait_for(lambda: asyncio.sleep(0, len(store.called("claim_tasks")) >= 3), 5, 0.005)
    started = time.monotonic()
    runner.stop()
    await runners.ended(runner, 1)
    assert time.monotonic() - started < 0.3  # not the 0.4 s backoff it was waiting out


async def test_a_cancel_notification_stops_the_handler_and_writes_nothing_more(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    endless = Endless()
    task_id = store.add("endless")
    runner = runners.start(registry_of(endless=endless), runner_heartbeat_interval_s=60)
    await asyncio.wait_for(endless.reported.wait(), 1)
    await wait_for(lambda: asyncio.sleep(0, bool(store.listening)), 1, 0.005)

    store.cancel(task_id)  # the gateway's cancel, and its NOTIFY
    cancelled = store.tasks[task_id]
    cancelled_at = time.monotonic()
    calls_before = len(store.calls)
    await wait_for(lambda: asyncio.sleep(0, runner.running == 0), 1, 0.005)

    assert endless.stopped_at is not None and endless.stopped_at - cancelled_at < 0.1
    assert store.tasks[task_id] == cancelled
    assert not WRITES & {name for name, _ in store.calls[calls_before:]}
    assert [p.version for p in publisher.of(task_id)] == [2, 3]  # its claim and its report
    assert runner.stats.withdrawn == 1


async def test_the_heartbeat_stops_a_handler_whose_row_was_taken_without_notification(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    endless = Endless()
    task_id = store.add("endless")
    runner = runners.start(registry_of(endless=endless))
    await asyncio.wait_for(endless.reported.wait(), 1)
    store.cancel(task_id, notify=False)
    await wait_for(lambda: asyncio.sleep(0, endless.stopped_at is not None), 1, 0.005)
    assert store.tasks[task_id].status == TaskStatus.CANCELLED
    assert runner.stats.withdrawn == 1


async def test_a_lost_listen_connection_is_made_again(
    store: FakeRunnerStore, runners: RunnerKit, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="runner"):
        runners.start(registry_of(quick=quick))
        await wait_for(lambda: asyncio.sleep(0, bool(store.listening)), 1, 0.005)
        store.listening[0].queue.put_nowait(StoreUnavailable("PostgreSQL unavailable (fake)"))
        await wait_for(lambda: asyncio.sleep(0, len(store.called("listen")) == 2), 2, 0.01)
    [warning] = [r for r in caplog.records if r.action == "listen_retry"]  # type: ignore[attr-defined]
    assert warning.getMessage() == (
        "LISTEN connection lost, reconnecting in 0.5s: PostgreSQL unavailable (fake)"
    )


async def test_the_reaper_fails_a_stale_task_of_a_lost_runner_and_publishes_it(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    task_id = store.add("orphan")
    await store.claim_tasks(runner_id="ghost", timeouts={"orphan": 86400.0}, limit=1)
    store.age(task_id, started_ago_s=3600, beat_ago_s=3600)
    runner = runners.start(registry_of(quick=quick), runner_stale_after_s=0.1)
    reaped = await status_of(store, task_id, "failed")
    assert reaped.error == runner_lost_error(runner.settings.runner_stale_after_s)
    assert await published_up_to(publisher, reaped) == [reaped]
    assert runner.stats.reaped == 1


async def test_the_reaper_fails_a_task_past_its_deadline_with_the_timeout_error(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    task_id = store.add("validation_kit")
    await store.claim_tasks(runner_id="stuck", timeouts={"validation_kit": 240.0}, limit=1)
    store.age(task_id, started_ago_s=3600, beat_ago_s=0)
    runners.start(registry_of(quick=quick), runner_stale_after_s=0.1)
    reaped = await status_of(store, task_id, "failed")
    assert reaped.error == "Validation Kit task timed out after 240s"


async def test_shutdown_requeues_a_running_task_after_the_grace(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    endless = Endless()
    task_id = store.add("endless")
    runner = runners.start(registry_of(endless=endless), runner_shutdown_grace_s=0.2)
    await asyncio.wait_for(endless.reported.wait(), 1)

    stopped_at = time.monotonic()
    runner.stop()
    requeued = await status_of(store, task_id, "pending")

    assert endless.stopped_at is not None and endless.stopped_at - stopped_at >= 0.2
    assert requeued.message == REQUEUED_MESSAGE
    assert requeued.claim_token is None and requeued.started_at is None
    assert (await published_up_to(publisher, requeued))[-1] == requeued
    assert runner.stats.requeued == 1


async def test_shutdown_lets_a_task_finish_within_the_grace(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    gate = asyncio.Event()

    async def short(task: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {"finished": True}

    task_id = store.add("short")
    runner = runners.start(registry_of(short=short), runner_shutdown_grace_s=1.0)
    await status_of(store, task_id, "running")
    runner.stop()
    await asyncio.sleep(0.05)
    gate.set()
    final = await status_of(store, task_id, "completed", "pending")
    assert final.status == TaskStatus.COMPLETED
    assert runner.stats.requeued == 0


async def test_a_forced_stop_skips_the_grace(store: FakeRunnerStore, runners: RunnerKit) -> None:
    endless = Endless()
    task_id = store.add("endless")
    runner = runners.start(registry_of(endless=endless), runner_shutdown_grace_s=30)
    await asyncio.wait_for(endless.reported.wait(), 1)
    runner.stop(force=True)
    requeued = await status_of(store, task_id, "pending")
    assert requeued.message == REQUEUED_MESSAGE


async def test_the_runner_runs_at_most_its_concurrency(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    endless = Endless()
    task_ids = [store.add("endless") for _ in range(5)]
    runner = runners.start(registry_of(endless=endless), runner_concurrency=2)
    await wait_for(lambda: asyncio.sleep(0, runner.running == 2), 1, 0.005)
    await asyncio.sleep(0.1)  # two poll intervals: still no third claim
    statuses = sorted(store.tasks[t].status for t in task_ids)
    assert statuses.count(TaskStatus.RUNNING) == 2
    assert all(args["limit"] <= 2 for args in store.called("claim_tasks"))


async def test_a_task_whose_end_is_being_written_holds_no_slot_but_stays_held(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    async def quick(task: TaskContext) -> dict[str, Any]:
        return {}

    first, second, third = (store.add("quick") for _ in range(3))
    written = store.end_tasks
    release = asyncio.Event()

    async def held_end(ends: Any) -> list[Task]:
        await release.wait()
        return await written(ends)

    store.end_tasks = held_end  # type: ignore[method-assign]
    runner = runners.start(registry_of(quick=quick), runner_concurrency=1)
    # The first handler returned; its end waits on PostgreSQL, and the next task runs meanwhile.
    await wait_for(lambda: asyncio.sleep(0, runner.running == 2), 1, 0.005)
    await asyncio.sleep(0.1)  # two poll intervals: one end waited on besides, never more
    assert runner.running == 2 and store.tasks[third].status == TaskStatus.PENDING
    assert {store.tasks[t].status for t in (first, second)} == {TaskStatus.RUNNING}
    release.set()
    for task_id in (first, second, third):
        await status_of(store, task_id, "completed")
    assert runner.stats.completed == 3
