"""`runner.throttle.ProgressThrottle` on the in-memory store: a task's progress is written at
most once per interval (the newest state), a new phase always, the last report before the end
always and in order, and a task found gone by a kept report's write surfaces as TaskLost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from praxiom_progress.runner.batch import ProgressBatcher, Report
from praxiom_progress.runner.handlers import TaskContext, TaskFailed, TaskLost
from praxiom_progress.runner.throttle import ProgressThrottle
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.models import Task
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit


async def claimed(store: FakeRunnerStore) -> Task:
    store.add("sample")
    [task] = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=1)
    return task


def throttle_on(
    store: FakeRunnerStore, publisher: RecordingPublisher, interval_s: float
) -> ProgressThrottle:
    batcher = ProgressBatcher(store.report_progress, TaskWriter(publisher))  # type: ignore[arg-type]
    return ProgressThrottle(batcher, interval_s)


def report(task: Task, phase: str, pct: int) -> Report:
    assert task.claim_token is not None
    return Report(task.id, task.claim_token, phase, pct, f"{phase} {pct}")


async def test_reports_inside_an_interval_keep_only_the_newest_and_return_at_once(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 0.2)
    throttle.start(task.id, "running")
    started = time.monotonic()
    for pct in range(100):
        assert await throttle.submit(report(task, "running", pct))
    assert time.monotonic() - started < 0.1  # none waited for the interval
    assert [p.progress_pct for p in publisher.of(task.id)] == [0]  # the first went at once
    await asyncio.sleep(0.3)
    assert [p.progress_pct for p in publisher.of(task.id)] == [0, 99]  # the newest, when due
    assert (throttle.stats.accepted, throttle.stats.written) == (100, 2)


async def test_a_new_phase_is_written_at_once_and_supersedes_the_kept_report(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 10.0)
    throttle.start(task.id, "running")
    for phase in ("download", "download", "parse", "parse", "upload"):
        await throttle.submit(report(task, phase, 10))
    await asyncio.sleep(0)  # a report returns once written; its publish follows in a step
    # Every distinct phase reached the stream; the kept "download" was superseded by "parse".
    assert [p.phase for p in publisher.of(task.id)] == ["download", "parse", "upload"]


async def test_finish_writes_the_kept_report_at_once_before_the_end(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 10.0)
    throttle.start(task.id, "export")
    for pct in (1, 2, 3):
        await throttle.submit(report(task, "export", pct))
    started = time.monotonic()
    assert await throttle.finish(task.id)
    assert time.monotonic() - started < 1  # not after the 10 s interval
    assert [p.progress_pct for p in publisher.of(task.id)] == [1, 3]
    assert store.tasks[task.id].progress_pct == 3


async def test_a_kept_report_that_finds_its_task_gone_makes_the_next_report_lost(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 0.05)
    throttle.start(task.id, "export")
    assert await throttle.submit(report(task, "export", 1))
    store.cancel(task.id, notify=False)
    assert await throttle.submit(report(task, "export", 2))  # kept: returns at once
    await asyncio.sleep(0.15)  # its write matched nothing
    assert not await throttle.submit(report(task, "export", 3))
    assert not await throttle.finish(task.id)


async def test_interval_zero_writes_every_report(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 0.0)
    throttle.start(task.id, "running")
    for pct in (1, 2, 3):
        await throttle.submit(report(task, "running", pct))
    await asyncio.sleep(0)  # a report returns once written; its publish follows in a step
    assert [p.progress_pct for p in publisher.of(task.id)] == [1, 2, 3]


async def test_a_tight_loop_costs_at_most_one_version_per_interval_plus_phases_and_ends(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    """The issue's acceptance, shrunk: 0.5 s of reports at 0.05 s gives ≤ 0.5/0.05 + phases + 2
    versions after the claim (the +2: the last report before the end, and the end)."""
    bench = HandlerKit(store, publisher, min_interval_s=0.05)
    calls = 0

    async def run(task: TaskContext) -> dict[str, Any]:
        nonlocal calls
        until = time.monotonic() + 0.5
        for phase in ("read", "write"):
            while time.monotonic() < until:
                await task.report_progress(phase, calls % 101, "row")
                calls += 1
            await task.report_progress(phase, 100, "done")
        return {"rows": calls}

    held = await bench.start(run)
    claim_version = store.tasks[held.task_id].version
    await asyncio.wait_for(held.job, 5)  # type: ignore[arg-type]
    final = store.tasks[held.task_id]
    assert final.status == "completed" and final.result_data == {"rows": calls}
    assert calls > 1000
    assert final.version - claim_version <= 0.5 / 0.05 + 2 + 2
    assert [p.phase for p in publisher.of(held.task_id)].count("write") >= 1


async def test_a_failed_task_keeps_exactly_its_last_report(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    bench = HandlerKit(store, publisher, min_interval_s=10.0)

    async def run(task: TaskContext) -> dict[str, Any]:
        for pct in range(1, 58):
            await task.report_progress("export", pct, f"row {pct}")
        raise TaskFailed("disk full")

    held = await bench.start(run)
    await asyncio.wait_for(held.job, 2)  # type: ignore[arg-type]
    final = store.tasks[held.task_id]
    assert (final.status, final.phase, final.progress_pct) == ("failed", "export", 57)
    assert final.message == "row 57" and final.error == "disk full"
    published = publisher.of(held.task_id)
    assert [(p.status, p.progress_pct) for p in published] == [
        ("running", 0),  # the claim
        ("running", 1),  # a new phase: at once
        ("running", 57),  # the last report, written before the end
        ("failed", 57),
    ]


async def test_a_handler_that_goes_on_after_its_task_was_lost_gets_task_lost(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    bench = HandlerKit(store, publisher, min_interval_s=0.02)
    seen: list[str] = []

    async def run(task: TaskContext) -> dict[str, Any]:
        try:
            for pct in range(10_000):
                await task.report_progress("export", pct % 101, "row")
                await asyncio.sleep(0.001)
        except TaskLost:
            seen.append("lost")
            raise
        return {}

    held = await bench.start(run)
    await asyncio.sleep(0.05)
    store.cancel(held.task_id, notify=False)
    cancelled = store.tasks[held.task_id]
    await asyncio.wait_for(held.job, 2)  # type: ignore[arg-type]
    assert seen == ["lost"]
    assert store.tasks[held.task_id] == cancelled


async def test_a_kept_report_retried_after_an_outage_never_lands_after_a_newer_one(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    task = await claimed(store)
    throttle = throttle_on(store, publisher, 0.02)
    throttle.start(task.id, "running")
    assert await throttle.submit(report(task, "download", 1))
    store.fail_next("report_progress")  # the kept report's write: PostgreSQL is away
    assert await throttle.submit(report(task, "download", 2))
    await asyncio.sleep(0.05)  # its write failed; it waits 0.1 s to try again
    assert await throttle.submit(report(task, "upload", 3))  # a newer state goes meanwhile
    assert await throttle.finish(task.id)
    assert [(p.phase, p.progress_pct) for p in publisher.of(task.id)] == [
        ("download", 1),
        ("upload", 3),
    ]
    assert store.tasks[task.id].phase == "upload"
