"""Running one claimed task: its handler under its timeout, then its end, written and published.

The loops that claim tasks and stop them live in `runner.worker`; this module is
what happens to one task between its claim and its last write. Every write is
guarded by the claim token, so a task that was cancelled or reaped meanwhile
(withdrawn) is never overwritten: its handler is stopped and nothing more is written.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from praxiom_progress.runner.backoff import Backoff
from praxiom_progress.runner.batch import Report
from praxiom_progress.runner.ends import EndBatcher
from praxiom_progress.runner.handlers import (
    TaskFailed,
    TaskHandler,
    TaskLost,
    TaskResult,
    timeout_error,
)
from praxiom_progress.runner.invocation import HandlerInvoker
from praxiom_progress.runner.isolation import HandlerProcessError
from praxiom_progress.runner.retry import Retry, RetryPolicy
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.runner.throttle import ProgressThrottle
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus

log = logging.getLogger("runner")

REQUEUED_MESSAGE = "Runner shut down; task re-queued to start again"
DEFAULT_COMPLETED_MESSAGE = "Completed"
_MAX_ERROR_LENGTH = 500


def describe_failure(exc: BaseException) -> str:
    """A one-line `error` for the payload; the traceback goes to the log only."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, TaskFailed | HandlerProcessError):  # already the whole line
        line = first or "Task failed"
    else:
        line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line[:_MAX_ERROR_LENGTH]


class StopReason(enum.Enum):
    WITHDRAWN = "withdrawn"  # the row is no longer ours: cancelled or reaped
    SHUTDOWN = "shutdown"  # this runner is stopping: hand the task back


@dataclass(frozen=True)
class Failure:
    error: str
    timed_out: bool = False
    retryable: bool = False  # the handler raised (not TaskFailed): a retry may help


#: How a handler ended: its result, a failure, or None when the task was withdrawn meanwhile.
Outcome = TaskResult | Failure | None


@dataclass
class RunnerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    withdrawn: int = 0
    reaped: int = 0
    requeued: int = 0
    retried: int = 0


@dataclass(eq=False)
class HeldTask:
    """A task this runner has claimed and not yet recorded an end for."""

    task_id: UUID
    claim_token: UUID
    handler: TaskHandler
    timeout_s: float
    params: Mapping[str, Any]
    attempt: int = 1  # this claim's attempt, counted by the claim
    max_attempts: int = 1
    job: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    finishing: bool = False  # the handler returned; its end is being written

    def withdraw(self, reason: StopReason) -> None:
        """Stop the handler, unless its end is already being written."""
        if self.finishing or self.stop_reason is not None or self.job is None:
            return
        self.stop_reason = reason
        self.job.cancel()


class TaskExecutor:
    """Runs held tasks: `execute` returns once nothing more will be written for the task."""

    def __init__(
        self,
        store: RunnerStore,
        writer: TaskWriter,
        throttle: ProgressThrottle,
        stats: RunnerStats,
        *,
        state: MutableMapping[str, Any] | None = None,
        kill_grace_s: float = 2.0,
        retry_policy: RetryPolicy | None = None,
        on_retry: Callable[[float], None] | None = None,
        on_handler_done: Callable[[], None] | None = None,
    ) -> None:
        """`state` is what the start-up hooks filled, handed to every handler. `on_retry` is
        told, in seconds from now, when a task this runner let go for a retry becomes due (the
        claim loop wakes for it). `on_handler_done` is told when a handler has returned and
        its end is about to be written (its slot is free, runner.slots)."""
        self._store = store
        # Ends made together leave in one statement (runner.ends).
        self._ends = EndBatcher(store.end_tasks)
        self._writer = writer
        self._throttle = throttle
        self._stats = stats
        self.invoker = HandlerInvoker(state=state, kill_grace_s=kill_grace_s)
        self._retry_policy = retry_policy or RetryPolicy()
        self._on_retry = on_retry
        self._on_handler_done = on_handler_done

    async def execute(self, held: HeldTask, claimed: Task) -> None:
        """Publish the claim, run the handler, record its end (or hand the task back when
        the runner stops it)."""
        self._throttle.start(held.task_id, claimed.phase)
        try:
            try:
                # Awaited: a handler that blocks the loop at once must not hold back its claim
                # until after a reaper has ended the task (and published that end).
                await self._writer.publish([claimed])
                outcome = await self._call_handler(held, claimed)
            except asyncio.CancelledError:
                if held.stop_reason is None:
                    raise  # cancelled from outside the runner: let it end the task
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await self._after_stop(held)
                return
            held.finishing = True
            if self._on_handler_done is not None:
                self._on_handler_done()
            await self._record(held, outcome)
        except Exception:
            # A bug or a rejected write: the row stays running, so the reaper will end it.
            log.exception(
                "task %s: recording its end failed",
                held.task_id,
                extra={"action": "record_error", "task_id": str(held.task_id)},
            )
        finally:
            self._throttle.drop(held.task_id)

    async def _call_handler(self, held: HeldTask, claimed: Task) -> Outcome:
        """Run the handler under its timeout (on the loop, in a thread or in a child process,
        as its kind needs); how it ended."""

        async def sink(phase: str, progress_pct: int, message: str) -> None:
            await self._report(held, phase, progress_pct, message)

        deadline = asyncio.timeout(held.timeout_s)
        try:
            async with deadline:
                returned = await self.invoker.call(held.handler, claimed, sink)
        except TaskLost:
            return None
        except TimeoutError as exc:
            if deadline.expired():
                return Failure(timeout_error(held.handler.label, held.timeout_s), timed_out=True)
            return _handler_failed(held, exc)
        except Exception as exc:
            return _handler_failed(held, exc)
        if held.stop_reason is not None:
            return None  # the handler swallowed TaskLost and returned anyway
        return _as_result(returned)

    async def _report(self, held: HeldTask, phase: str, progress_pct: int, message: str) -> None:
        if held.stop_reason is not None:
            raise TaskLost(f"task {held.task_id} is no longer held by this runner")
        report = Report(held.task_id, held.claim_token, phase, progress_pct, message)
        # Written (or kept as the newest state, runner.throttle) and published together with
        # whatever other tasks report meanwhile.
        if not await self._throttle.submit(report):
            held.stop_reason = StopReason.WITHDRAWN
            raise TaskLost(f"task {held.task_id} was cancelled or reaped")

    async def _record(self, held: HeldTask, outcome: Outcome) -> None:
        # The last report before the end is written before it, never lost nor reordered.
        if outcome is None or not await self._throttle.finish(held.task_id):
            self._note_withdrawn(held, "while its handler ran")
            return
        retry = self._retry_for(held, outcome)
        if retry is not None:
            await self._writer.write_one(self._retry(held, retry))
            return
        await self._writer.write_one(self._end(held, outcome))

    def _retry_for(self, held: HeldTask, outcome: TaskResult | Failure) -> Retry | None:
        """A retry when the handler failed in a way that may pass, and attempts remain."""
        if not isinstance(outcome, Failure):
            return None
        handler = held.handler
        if not (outcome.retryable or (outcome.timed_out and handler.retry_on_timeout)):
            return None
        return self._retry_policy.after(
            first_s=handler.retry_backoff_s,
            failed_attempt=held.attempt,
            max_attempts=held.max_attempts,
            error=outcome.error,
        )

    async def _retry(self, held: HeldTask, retry: Retry) -> Task | None:
        """Let the task go back to pending until its retry is due; None when it is no longer
        ours (cancelled or reaped meanwhile)."""
        task = await Backoff().retry(
            "retry_task",
            lambda: self._store.retry_task(
                task_id=held.task_id,
                claim_token=held.claim_token,
                message=retry.message,
                delay_s=retry.delay_s,
            ),
        )
        if task is None:
            task = await self._retried_by_us(held, retry)
        if task is None:
            self._note_withdrawn(held, "before its retry was recorded")
            return None
        self._stats.retried += 1
        if self._on_retry is not None:
            self._on_retry(retry.delay_s)
        log.info(
            "task %s: %s",
            held.task_id,
            retry.message,
            extra={"action": "retrying", "task_id": str(held.task_id)},
        )
        return task

    async def _retried_by_us(self, held: HeldTask, retry: Retry) -> Task | None:
        """The task, if our retry write committed although its answer was lost."""
        task = await Backoff().retry("get_task", lambda: self._store.get_task(held.task_id))
        if task is None or task.status != TaskStatus.PENDING or task.message != retry.message:
            return None
        return task

    async def _end(self, held: HeldTask, outcome: TaskResult | Failure) -> Task | None:
        """Write the task's end and count it; None when the task is no longer ours."""
        if isinstance(outcome, TaskResult):
            task = await Backoff().retry(
                "complete_task",
                lambda: self._ends.complete(
                    task_id=held.task_id,
                    claim_token=held.claim_token,
                    message=outcome.message or DEFAULT_COMPLETED_MESSAGE,
                    result_data=outcome.result_data,
                ),
            )
        else:
            task = await Backoff().retry(
                "fail_task",
                lambda: self._ends.fail(
                    task_id=held.task_id, claim_token=held.claim_token, error=outcome.error
                ),
            )
        if task is None:
            task = await self._written_by_us(held, outcome)
        if task is None:
            self._note_withdrawn(held, "before its end was recorded")
            return None
        self._count_end(held, task, outcome)
        return task

    async def _written_by_us(self, held: HeldTask, outcome: TaskResult | Failure) -> Task | None:
        """The task, if our end write did commit although its answer was lost (the retried
        write then matches nothing): it must still be published."""
        task = await Backoff().retry("get_task", lambda: self._store.get_task(held.task_id))
        if task is None or task.claim_token != held.claim_token:
            return None
        if isinstance(outcome, TaskResult):
            return task if task.status == TaskStatus.COMPLETED else None
        return task if (task.status, task.error) == (TaskStatus.FAILED, outcome.error) else None

    def _count_end(self, held: HeldTask, task: Task, outcome: TaskResult | Failure) -> None:
        if task.status == TaskStatus.COMPLETED:
            self._stats.completed += 1
        else:
            self._stats.failed += 1
            if isinstance(outcome, Failure) and outcome.timed_out:
                self._stats.timed_out += 1
        log.info(
            "task %s %s",
            held.task_id,
            task.status,
            extra={
                "action": task.status,
                "task_id": str(held.task_id),
                "status": task.status,
                "duration_ms": task.run_time_ms,
            },
        )

    async def _after_stop(self, held: HeldTask) -> None:
        if held.stop_reason is StopReason.WITHDRAWN:
            self._note_withdrawn(held, "while its handler ran; handler stopped")
            return
        await self._writer.write_one(self._requeue(held))

    async def _requeue(self, held: HeldTask) -> Task | None:
        """Hand the task back as pending, from the start, for any runner to claim again."""
        task = await Backoff().retry(
            "requeue_task",
            lambda: self._store.requeue_task(
                task_id=held.task_id, claim_token=held.claim_token, message=REQUEUED_MESSAGE
            ),
        )
        if task is not None:
            self._stats.requeued += 1
            log.info(
                "task %s re-queued",
                held.task_id,
                extra={"action": "requeued", "task_id": str(held.task_id)},
            )
        return task

    def _note_withdrawn(self, held: HeldTask, when: str) -> None:
        self._stats.withdrawn += 1
        log.info(
            "task %s was cancelled or reaped %s",
            held.task_id,
            when,
            extra={"action": "withdrawn", "task_id": str(held.task_id)},
        )


def _handler_failed(held: HeldTask, exc: Exception) -> Failure:
    if isinstance(exc, HandlerProcessError):
        log.error(
            "handler process of task %s: %s\n%s",
            held.task_id,
            exc,
            exc.child_traceback,
            extra={"action": "handler_error", "task_id": str(held.task_id)},
        )
    elif not isinstance(exc, TaskFailed):
        log.error(
            "handler for task %s raised",
            held.task_id,
            exc_info=exc,
            extra={"action": "handler_error", "task_id": str(held.task_id)},
        )
    return Failure(describe_failure(exc), retryable=not isinstance(exc, TaskFailed))


def _as_result(returned: Any) -> TaskResult | Failure:
    if returned is None:
        returned = {}
    result = returned if isinstance(returned, TaskResult) else TaskResult(returned)
    if not isinstance(result.result_data, Mapping):
        return Failure(
            f"Handler returned {type(result.result_data).__name__}, not a result_data object"
        )
    try:
        json.dumps(dict(result.result_data), allow_nan=False)  # jsonb has no NaN
    except (TypeError, ValueError) as exc:
        return Failure(
            f"Handler returned a result_data that is not JSON: {exc}"[:_MAX_ERROR_LENGTH]
        )
    if result.message is not None and not isinstance(result.message, str):
        return Failure("Handler returned a message that is not a string")
    return result
