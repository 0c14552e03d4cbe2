"""`runner.batch.ProgressBatcher` on the in-memory store: each statement's committed tasks are
published once through the writer, and each statement is timed for the metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from praxiom_progress.runner.batch import ProgressBatcher, Report
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher


async def claimed(store: FakeRunnerStore, n: int) -> list[Task]:
    for _ in range(n):
        store.add("sample")
    return await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=n)


def report(task: Task, pct: int) -> Report:
    assert task.claim_token is not None
    return Report(task.id, task.claim_token, "working", pct, f"at {pct}")


async def test_reports_made_together_are_written_and_published_in_one_go(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    tasks = await claimed(store, 3)
    store.cancel(tasks[1].id, notify=False)
    timings: list[float] = []
    batcher = ProgressBatcher(
        store.report_progress,
        TaskWriter(publisher),
        in_flight=1,
        on_write=timings.append,  # type: ignore[arg-type]
    )
    written = await asyncio.gather(*(batcher.submit(report(t, 30)) for t in tasks))

    assert [len(args["reports"]) for args in store.called("report_progress")] == [3]
    assert written[1] is None  # no longer held: nothing written, nothing published
    assert [w.progress_pct if w else None for w in written] == [30, None, 30]
    assert publisher.calls == [[written[0], written[2]]]
    assert len(timings) == 1 and timings[0] >= 0


async def test_a_failed_statement_is_timed_and_reaches_every_caller(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    tasks = await claimed(store, 2)
    timings: list[float] = []

    async def unavailable(reports: Sequence[Report]) -> list[Task]:
        raise StoreUnavailable("PostgreSQL is down")

    batcher = ProgressBatcher(unavailable, TaskWriter(publisher), on_write=timings.append)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(batcher.submit(report(t, 5)) for t in tasks), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert publisher.published == []
    assert len(timings) == 1


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_one_task_s_reports_keep_their_order(
    store: FakeRunnerStore, publisher: RecordingPublisher, in_flight: int
) -> None:
    [task] = await claimed(store, 1)
    batcher = ProgressBatcher(store.report_progress, TaskWriter(publisher), in_flight=in_flight)  # type: ignore[arg-type]
    await asyncio.gather(*(batcher.submit(report(task, pct)) for pct in (1, 2, 3)))
    assert [p.progress_pct for p in publisher.published] == [1, 2, 3]
    assert [len(args["reports"]) for args in store.called("report_progress")] == [1, 1, 1]


async def test_in_flight_statements_run_at_once_for_different_tasks(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    """RUNNER_PROGRESS_STATEMENTS reaches the group commit: with two in flight, a second
    task's report goes out while the first one's statement still waits on PostgreSQL."""
    tasks = await claimed(store, 2)
    first_started, release = asyncio.Event(), asyncio.Event()
    running = most = 0

    async def slow_write(reports: Sequence[Report]) -> list[Task]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        first_started.set()
        try:
            await release.wait()
            return await store.report_progress(reports)
        finally:
            running -= 1

    batcher = ProgressBatcher(slow_write, TaskWriter(publisher), in_flight=2)
    first = asyncio.create_task(batcher.submit(report(tasks[0], 10)))
    await first_started.wait()
    second = asyncio.create_task(batcher.submit(report(tasks[1], 20)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert running == 2, "the second task's report waited for the first statement"
    release.set()
    written = [await first, await second]
    assert [w.progress_pct if w else None for w in written] == [10, 20]
    assert most == 2


async def test_each_statement_is_timed_by_its_own_duration(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    [task] = await claimed(store, 1)
    timings: list[float] = []
    batcher = ProgressBatcher(
        store.report_progress,
        TaskWriter(publisher),
        on_write=timings.append,  # type: ignore[arg-type]
    )
    started = time.perf_counter()
    await batcher.submit(report(task, 40))
    elapsed = time.perf_counter() - started
    assert len(timings) == 1 and 0 <= timings[0] <= elapsed


async def test_a_report_whose_handler_then_holds_the_loop_past_the_deadline_is_not_published(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    """The publish follows the handler's resumption by a loop step; a handler that blocks the
    loop longer than `publish_within_s` may have had its task reaped meanwhile."""
    first, second = await claimed(store, 2)
    batcher = ProgressBatcher(store.report_progress, TaskWriter(publisher), publish_within_s=0.05)
    assert await batcher.submit(report(first, 10)) is not None  # committed ...
    time.sleep(0.1)  # noqa: ASYNC251  # ... then the handler holds the loop
    assert await batcher.submit(report(second, 20)) is not None  # a later one, in time
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [t.id for t in publisher.published] == [second.id]
    assert store.tasks[first.id].progress_pct == 10  # PostgreSQL has it all the same
