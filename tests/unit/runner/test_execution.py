"""One task from its claim to its last write (`runner.execution`), on the in-memory store: ends,
timeouts, withdrawals, a lost answer, and the hand-back at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from praxiom_progress.runner.execution import (
    REQUEUED_MESSAGE,
    StopReason,
)
from praxiom_progress.runner.handlers import TaskContext, TaskFailed, TaskLost
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit


@pytest.fixture
def bench(store: FakeRunnerStore, publisher: RecordingPublisher) -> HandlerKit:
    return HandlerKit(store, publisher)


async def test_a_handler_s_result_is_written_then_published_once(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 50, "Half way")
        return {"answer": 42}

    held = await bench.start(run)
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]

    stored = bench.store.tasks[held.task_id]
    assert (stored.status, stored.phase, stored.progress_pct) == ("completed", "complete", 100)
    assert stored.result_data == {"answer": 42} and stored.message == "Completed"
    published = bench.publisher.of(held.task_id)
    assert [(p.status, p.progress_pct) for p in published] == [
        ("running", 0),
        ("running", 50),
        ("completed", 100),
    ]
    assert published[-1] == stored  # the committed task, not a copy made before the write
    assert bench.stats.completed == 1


async def test_a_handler_timeout_fails_the_task_with_the_spec_s_message(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 30, "Working")
        await asyncio.sleep(3600)
        return {}

    held = await bench.start(run, timeout_s=0.05)
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]

    stored = bench.store.tasks[held.task_id]
    assert stored.status == TaskStatus.FAILED
    assert stored.error == "Sample task timed out after 0.05s"
    assert (stored.phase, stored.progress_pct) == ("working", 30)  # the last phase and pct kept
    assert bench.publisher.of(held.task_id)[-1] == stored
    assert (bench.stats.failed, bench.stats.timed_out) == (1, 1)


async def test_a_handler_error_fails_the_task_with_one_line(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        raise TaskFailed("Upstream refused\ntraceback-like detail")

    held = await bench.start(run)
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]
    stored = bench.store.tasks[held.task_id]
    assert (stored.status, stored.error) == ("failed", "Upstream refused")
    assert (bench.stats.failed, bench.stats.timed_out) == (1, 0)


async def test_a_task_withdrawn_between_reports_stops_its_handler_and_nothing_more_is_written(
    bench: HandlerKit,
) -> None:
    reported, gate = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 10, "Started")
        reported.set()
        await gate.wait()
        try:
            await task.report_progress("working", 90, "Too late")
        except TaskLost:
            seen.append("lost")
            raise
        seen.append("went on")
        return {"late": True}

    held = await bench.start(run)
    await asyncio.wait_for(reported.wait(), 1)
    bench.store.cancel(held.task_id, notify=False)  # cancelled (or reaped) elsewhere
    cancelled = bench.store.tasks[held.task_id]
    calls_before = len(bench.store.calls)
    gate.set()
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]

    assert seen == ["lost"]
    assert bench.store.tasks[held.task_id] == cancelled  # not one column overwritten
    # Its report matched nothing; no end was written after it.
    assert [name for name, _ in bench.store.calls[calls_before:]] == ["report_progress"]
    assert bench.published_after(cancelled.version, held) == []
    assert (bench.stats.withdrawn, bench.stats.completed, bench.stats.failed) == (1, 0, 0)


async def test_a_handler_that_swallows_task_lost_still_writes_no_end(bench: HandlerKit) -> None:
    gate = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        await gate.wait()
        try:
            await task.report_progress("working", 90, "Too late")
        except TaskLost:
            pass
        return {"ignored": True}

    held = await bench.start(run)
    bench.store.cancel(held.task_id, notify=False)
    gate.set()
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]
    assert bench.store.called("complete_task") == []
    assert bench.store.tasks[held.task_id].status == TaskStatus.CANCELLED
    assert bench.stats.withdrawn == 1


async def test_withdrawing_a_running_handler_cancels_it_and_writes_nothing(
    bench: HandlerKit,
) -> None:
    stopped = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()
        return {}

    held = await bench.start(run)
    await asyncio.sleep(0.01)
    bench.store.cancel(held.task_id, notify=False)
    calls_before = len(bench.store.calls)
    held.withdraw(StopReason.WITHDRAWN)  # what a NOTIFY or a heartbeat does
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]
    assert stopped.is_set()
    assert bench.store.calls[calls_before:] == []
    assert bench.stats.withdrawn == 1


@pytest.mark.parametrize("ending", ["complete_task", "fail_task"])
async def test_an_end_whose_answer_was_lost_is_still_published_once(
    bench: HandlerKit, ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The end write commits but its answer never arrives; the retried write then matches
    nothing (the task is no longer running), and the task must be published all the same."""

    async def run(task: TaskContext) -> dict[str, Any]:
        if ending == "fail_task":
            raise TaskFailed("It broke")
        return {"ok": True}

    bench.store.lose_answer(ending)
    with caplog.at_level(logging.WARNING, logger="runner"):
        held = await bench.start(run)
        await asyncio.wait_for(held.job, 2)  # type: ignore[arg-type]

    assert len(bench.store.called(ending)) == 2  # the lost one, and the retry that matched nothing
    assert [args["task_id"] for args in bench.store.called("get_task")] == [held.task_id]
    stored = bench.store.tasks[held.task_id]
    ends = [p for p in bench.publisher.of(held.task_id) if p.is_terminal]
    assert ends == [stored]
    assert stored.status == ("completed" if ending == "complete_task" else "failed")
    assert bench.stats.withdrawn == 0
    assert any(r.action == "write_retry" for r in caplog.records)  # type: ignore[attr-defined]


async def test_an_end_write_that_matches_nothing_is_not_published(bench: HandlerKit) -> None:
    """The end write fails, and by its retry the task was cancelled: the retry matches
    nothing, the row is not ours to publish, and the task counts as withdrawn."""
    gate = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {"ok": True}

    held = await bench.start(run)
    bench.store.fail_next("complete_task")  # never ran: the task is cancelled meanwhile
    await asyncio.sleep(0.01)
    bench.store.cancel(held.task_id, notify=False)
    cancelled = bench.store.tasks[held.task_id]
    gate.set()
    await asyncio.wait_for(held.job, 2)  # type: ignore[arg-type]
    assert bench.store.tasks[held.task_id] == cancelled
    assert bench.published_after(cancelled.version, held) == []
    assert bench.stats.withdrawn == 1


async def test_shutdown_hands_a_running_task_back_as_pending(bench: HandlerKit) -> None:
    reported = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 60, "Working")
        reported.set()
        await asyncio.sleep(3600)
        return {}

    held = await bench.start(run)
    await asyncio.wait_for(reported.wait(), 1)
    held.withdraw(StopReason.SHUTDOWN)
    await asyncio.wait_for(held.job, 1)  # type: ignore[arg-type]

    stored = bench.store.tasks[held.task_id]
    assert (stored.status, stored.phase, stored.progress_pct) == ("pending", "pending", 0)
    assert stored.message == REQUEUED_MESSAGE and stored.claim_token is None
    assert bench.publisher.of(held.task_id)[-1] == stored
    assert bench.stats.requeued == 1


async def test_a_report_retries_while_the_store_is_unavailable(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("working", 20, "Working")
        return {}

    bench.store.fail_next("report_progress")
    held = await bench.start(run)
    await asyncio.wait_for(held.job, 2)  # type: ignore[arg-type]
    assert len(bench.store.called("report_progress")) == 2
    assert [p.progress_pct for p in bench.publisher.of(held.task_id)] == [0, 20, 100]


async def test_the_runner_is_told_when_a_handler_returns_before_its_end_is_written(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    seen: list[tuple[str, bool]] = []

    def handler_done() -> None:  # the worker frees the task's slot and wakes its claim loop
        seen.append((store.tasks[held.task_id].status, held.finishing))

    bench = HandlerKit(store, publisher, on_handler_done=handler_done)

    async def run(task: TaskContext) -> dict[str, Any]:
        assert seen == []
        return {}

    held = await bench.start(run)
    ended = await bench.ended(held)
    assert ended.status == "completed"
    assert seen == [("running", True)]  # once, the end not yet written
