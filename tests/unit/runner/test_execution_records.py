"""What `runner.execution` leaves behind besides the row: the one-line `error` a failure
becomes, what a handler may return, and the log records operators search by `action`
(README: "Logs"), each with the task's id."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from praxiom_progress.runner.execution import (
    REQUEUED_MESSAGE,
    StopReason,
    TaskResult,
    describe_failure,
)
from praxiom_progress.runner.handlers import TaskContext, TaskFailed
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit

LOGGER = "runner"  # runner.execution logs as the runner


@pytest.fixture
def bench(store: FakeRunnerStore, publisher: RecordingPublisher) -> HandlerKit:
    return HandlerKit(store, publisher)


def records(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


# -- the error line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("bad input\nsecond line"), "ValueError: bad input"),
        (ValueError(), "ValueError"),
        (ValueError("   "), "ValueError"),
        (KeyError("k"), "KeyError: 'k'"),
        (TaskFailed("Upstream refused\ndetail"), "Upstream refused"),
        (TaskFailed(""), "Task failed"),
    ],
    ids=["first-line", "no-message", "blank", "key-error", "task-failed", "task-failed-blank"],
)
def test_a_failure_becomes_one_line(exc: BaseException, line: str) -> None:
    assert describe_failure(exc) == line


def test_the_error_line_is_cut_at_500_characters() -> None:
    assert describe_failure(TaskFailed("x" * 600)) == "x" * 500
    assert describe_failure(RuntimeError("y" * 600)) == ("RuntimeError: " + "y" * 600)[:500]


# -- what a handler may return -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (["a", "list"], "Handler returned list, not a result_data object"),
        ({"ratio": float("nan")}, "Handler returned a result_data that is not JSON: "),
        ({"when": object()}, "Handler returned a result_data that is not JSON: "),
        (TaskResult({"ok": True}, message=7), "Handler returned a message that is not a string"),  # type: ignore[arg-type]
    ],
    ids=["not-a-mapping", "nan", "not-serializable", "message-not-a-string"],
)
async def test_a_result_the_row_cannot_hold_fails_the_task(
    bench: HandlerKit, returned: Any, error: str
) -> None:
    async def run(task: TaskContext) -> Any:
        return returned

    held = await bench.start(run)
    ended = await bench.ended(held)
    assert ended.status == "failed" and ended.error is not None
    assert ended.error.startswith(error) and "\n" not in ended.error
    assert bench.stats.failed == 1


@pytest.mark.parametrize("returned", [None, {}, TaskResult({}), TaskResult({}, message=None)])
async def test_nothing_returned_completes_with_an_empty_result(
    bench: HandlerKit, returned: Any
) -> None:
    async def run(task: TaskContext) -> Any:
        return returned

    ended = await bench.ended(await bench.start(run))
    assert (ended.status, ended.result_data, ended.message) == ("completed", {}, "Completed")


async def test_a_result_s_own_message_is_kept(bench: HandlerKit) -> None:
    async def run(task: TaskContext) -> Any:
        return TaskResult({"n": 1}, message="All done")

    ended = await bench.ended(await bench.start(run))
    assert (ended.status, ended.result_data, ended.message) == ("completed", {"n": 1}, "All done")


# -- the log ------------------------------------------------------------------------------------


async def test_an_end_is_logged_with_its_status_and_duration(
    bench: HandlerKit, caplog: pytest.LogCaptureFixture
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        return {}

    with caplog.at_level(logging.INFO, logger=LOGGER):
        held = await bench.start(run)
        ended = await bench.ended(held)
    (record,) = records(caplog, "completed")
    assert record.getMessage() == f"task {held.task_id} completed"
    assert (record.task_id, record.status) == (str(held.task_id), "completed")  # type: ignore[attr-defined]
    assert record.duration_ms == ended.run_time_ms  # type: ignore[attr-defined]


async def test_a_raising_handler_is_logged_with_its_traceback_and_a_refusal_is_not(
    bench: HandlerKit, caplog: pytest.LogCaptureFixture
) -> None:
    async def raising(task: TaskContext) -> dict[str, Any]:
        raise ValueError("boom")

    async def refusing(task: TaskContext) -> dict[str, Any]:
        raise TaskFailed("No such customer")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        held = await bench.start(raising)
        await bench.ended(held)
        (error,) = records(caplog, "handler_error")
        assert error.levelno == logging.ERROR
        assert error.getMessage() == f"handler for task {held.task_id} raised"
        assert error.task_id == str(held.task_id)  # type: ignore[attr-defined]
        assert error.exc_info is not None and error.exc_info[0] is ValueError
        (failed,) = records(caplog, "failed")
        assert failed.getMessage() == f"task {held.task_id} failed"
        caplog.clear()
        refused = await bench.start(refusing)
        await bench.ended(refused)
    assert records(caplog, "handler_error") == []  # the handler said why: no traceback
    assert len(records(caplog, "failed")) == 1


async def test_a_withdrawn_task_is_logged_as_such(
    bench: HandlerKit, caplog: pytest.LogCaptureFixture
) -> None:
    async def run(task: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    with caplog.at_level(logging.INFO, logger=LOGGER):
        held = await bench.start(run)
        await asyncio.sleep(0)
        bench.store.cancel(held.task_id, notify=False)
        held.withdraw(StopReason.WITHDRAWN)
        await bench.ended(held)
    (record,) = records(caplog, "withdrawn")
    assert record.getMessage() == (
        f"task {held.task_id} was cancelled or reaped while its handler ran; handler stopped"
    )
    assert record.task_id == str(held.task_id)  # type: ignore[attr-defined]
    assert bench.stats.withdrawn == 1


async def test_a_task_handed_back_at_shutdown_is_logged_as_requeued(
    bench: HandlerKit, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def run(task: TaskContext) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(3600)
        return {}

    with caplog.at_level(logging.INFO, logger=LOGGER):
        held = await bench.start(run)
        await started.wait()
        held.withdraw(StopReason.SHUTDOWN)
        ended = await bench.ended(held)
    assert ended.message == REQUEUED_MESSAGE
    (record,) = records(caplog, "requeued")
    assert record.getMessage() == f"task {held.task_id} re-queued"
    assert record.task_id == str(held.task_id)  # type: ignore[attr-defined]
    assert bench.stats.requeued == 1
