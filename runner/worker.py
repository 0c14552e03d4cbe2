"""The runner: claims tasks, runs their handlers under timeouts, records and publishes each step.

One claim loop and three side loops (LISTEN, heartbeat, reaper). Every write
to a task goes through `RunnerStore`, guarded by the claim token, and is
published only after it has committed.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID, uuid4

from runner.batch import ProgressBatcher, Report
from runner.handlers import (
    HandlerRegistry,
    TaskContext,
    TaskFailed,
    TaskHandler,
    TaskLost,
    TaskResult,
    timeout_error,
)
from runner.store import RunnerStore
from taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from taskstate.db import listen, translate_errors
from taskstate.errors import StoreUnavailable
from taskstate.models import Task
from taskstate.publisher import ProgressPublisher
from taskstate.settings import Settings
from taskstate.status import TaskStatus

log = logging.getLogger("runner")

T = TypeVar("T")

REQUEUED_MESSAGE = "Runner shut down; task re-queued to start again"
DEFAULT_COMPLETED_MESSAGE = "Completed"
#: How long, after the grace, shutdown waits for re-queue writes before giving up on them.
REQUEUE_WAIT_S = 10.0
_MAX_ERROR_LENGTH = 500
_REAP_BATCH = 100


def runner_lost_error(stale_after_s: float) -> str:
    return f"Task runner lost: no heartbeat for over {stale_after_s:g}s"


def describe_failure(exc: BaseException) -> str:
    """A one-line `error` for the payload; the traceback goes to the log only."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, TaskFailed):
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


@dataclass(eq=False)
class HeldTask:
    """A task this runner has claimed and not yet recorded an end for."""

    task_id: UUID
    claim_token: UUID
    handler: TaskHandler
    timeout_s: float
    params: Mapping[str, Any]
    job: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    finishing: bool = False  # the handler returned; its end is being written


@dataclass
class RunnerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    withdrawn: int = 0
    reaped: int = 0
    requeued: int = 0


@dataclass
class _Backoff:
    first_s: float = 0.1
    max_s: float = 5.0
    _next: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._next = min(self.max_s, self._next * 2 if self._next else self.first_s)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


class Runner:
    def __init__(
        self,
        settings: Settings,
        store: RunnerStore,
        publisher: ProgressPublisher,
        registry: HandlerRegistry,
        *,
        runner_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.registry = registry
        self.runner_id = runner_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.stats = RunnerStats()
        self.batcher = ProgressBatcher(
            store.report_progress,
            self.publisher.publish_tasks,
            in_flight=settings.runner_progress_statements,
        )
        self._timeouts = registry.timeouts(settings)
        self._held: dict[UUID, HeldTask] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Loop time since which this runner has reached PostgreSQL without a failure.
        self._connected_since: float | None = None

    @property
    def running(self) -> int:
        """Tasks claimed and not yet ended (read by the metrics collector)."""
        return len(self._held)

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming; running tasks get the shutdown grace (none when `force`)."""
        self._stopping.set()
        if force:
            self._force.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Run until `stop()`; on return no task of this runner is left running."""
        log.info(
            "runner %s started: types %s, concurrency %d",
            self.runner_id,
            ", ".join(sorted(self._timeouts)),
            self.settings.runner_concurrency,
            extra={"action": "runner_started"},
        )
        side = [
            asyncio.create_task(self._listen(), name="runner-listen"),
            asyncio.create_task(
                self._every(self.settings.runner_heartbeat_interval_s, self._beat, "heartbeat"),
                name="runner-heartbeat",
            ),
            asyncio.create_task(
                self._every(self.settings.runner_reaper_interval_s, self._reap, "reaper"),
                name="runner-reaper",
            ),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            await _cancel_and_wait(side)
            log.info("runner %s stopped", self.runner_id, extra={"action": "runner_stopped"})

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = _Backoff()
        while not self._stopping.is_set():
            self._wakeup.clear()
            free = self.settings.runner_concurrency - len(self._held)
            if free > 0:
                try:
                    tasks = await self.store.claim_tasks(
                        runner_id=self.runner_id, timeouts=self._timeouts, limit=free
                    )
                except StoreUnavailable as exc:
                    self._connected_since = None
                    delay = backoff.next_delay()
                    log.warning(
                        "claim failed, retrying in %.1fs: %s",
                        delay,
                        exc,
                        extra={"action": "claim_retry"},
                    )
                    await _first_of(delay, self._stopping)
                    continue
                backoff.reset()
                self._reached_database()
                for task in tasks:
                    self._start(task)
            await _first_of(self.settings.runner_poll_interval_s, self._wakeup)

    def _start(self, task: Task) -> None:
        handler = self.registry.get(task.task_type)
        assert handler is not None  # claim_tasks only claims registered types
        # A claimed row has all three: the claim sets them.
        assert task.claim_token is not None and task.timeout_s is not None
        held = HeldTask(task.id, task.claim_token, handler, task.timeout_s, task.params or {})
        self._held[held.task_id] = held
        self._idle.clear()
        self.stats.claimed += 1
        held.job = asyncio.create_task(self._execute(held, task), name=f"task-{held.task_id}")
        log.info(
            "claimed %s task %s",
            handler.task_type,
            held.task_id,
            extra={"action": "claimed", "task_id": str(held.task_id)},
        )

    # -- running one task -----------------------------------------------------------------

    async def _execute(self, held: HeldTask, claimed: Task) -> None:
        try:
            try:
                await self._publish(claimed)
                outcome = await self._call_handler(held)
            except asyncio.CancelledError:
                if held.stop_reason is None:
                    raise  # cancelled from outside the runner: let it end the task
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await self._after_stop(held)
                return
            held.finishing = True
            await self._record(held, outcome)
        except Exception:
            # A bug or a rejected write: the row stays running, so the reaper will end it.
            log.exception(
                "task %s: recording its end failed",
                held.task_id,
                extra={"action": "record_error", "task_id": str(held.task_id)},
            )
        finally:
            del self._held[held.task_id]
            if not self._held:
                self._idle.set()
            self._wakeup.set()

    async def _call_handler(self, held: HeldTask) -> TaskResult | Failure | None:
        """Run the handler; its outcome, or None when the task was withdrawn meanwhile."""
        context = TaskContext(
            task_id=held.task_id,
            task_type=held.handler.task_type,
            params=held.params,
            sink=lambda phase, pct, message: self._report(held, phase, pct, message),
        )
        deadline = asyncio.timeout(held.timeout_s)
        try:
            async with deadline:
                returned = await held.handler.run(context)
        except TaskLost:
            return None
        except TimeoutError as exc:
            if deadline.expired():
                return Failure(timeout_error(held.handler.label, held.timeout_s), timed_out=True)
            return self._handler_failed(held, exc)
        except Exception as exc:
            return self._handler_failed(held, exc)
        if held.stop_reason is not None:
            return None  # the handler swallowed TaskLost and returned anyway
        return _as_result(returned)

    def _handler_failed(self, held: HeldTask, exc: Exception) -> Failure:
        if not isinstance(exc, TaskFailed):
            log.error(
                "handler for task %s raised",
                held.task_id,
                exc_info=exc,
                extra={"action": "handler_error", "task_id": str(held.task_id)},
            )
        return Failure(describe_failure(exc))

    async def _report(self, held: HeldTask, phase: str, progress_pct: int, message: str) -> None:
        if held.stop_reason is not None:
            raise TaskLost(f"task {held.task_id} is no longer held by this runner")
        report = Report(held.task_id, held.claim_token, phase, progress_pct, message)
        # Written and published together with whatever other tasks report meanwhile.
        written = await self._retrying("report_progress", lambda: self.batcher.submit(report))
        if written is None:
            held.stop_reason = StopReason.WITHDRAWN
            raise TaskLost(f"task {held.task_id} was cancelled or reaped")

    async def _record(self, held: HeldTask, outcome: TaskResult | Failure | None) -> None:
        """Write the task's end, then publish it."""
        if outcome is None:
            self._note_withdrawn(held, "while its handler ran")
            return
        if isinstance(outcome, TaskResult):
            task = await self._retrying(
                "complete_task",
                lambda: self.store.complete_task(
                    task_id=held.task_id,
                    claim_token=held.claim_token,
                    message=outcome.message or DEFAULT_COMPLETED_MESSAGE,
                    result_data=outcome.result_data,
                ),
            )
        else:
            task = await self._retrying(
                "fail_task",
                lambda: self.store.fail_task(
                    task_id=held.task_id, claim_token=held.claim_token, error=outcome.error
                ),
            )
        if task is None:
            task = await self._written_by_us(held, outcome)
        if task is None:
            self._note_withdrawn(held, "before its end was recorded")
            return
        if task.status == TaskStatus.COMPLETED:
            self.stats.completed += 1
        else:
            self.stats.failed += 1
            if isinstance(outcome, Failure) and outcome.timed_out:
                self.stats.timed_out += 1
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
        await self._publish(task)

    async def _written_by_us(self, held: HeldTask, outcome: TaskResult | Failure) -> Task | None:
        """The row, if our end write did commit although its answer was lost (the retried
        write then matches nothing): it must still be published."""
        task = await self._retrying("get_task", lambda: self.store.get_task(held.task_id))
        if task is None or task.claim_token != held.claim_token:
            return None
        if isinstance(outcome, TaskResult):
            return task if task.status == TaskStatus.COMPLETED else None
        return task if (task.status, task.error) == (TaskStatus.FAILED, outcome.error) else None

    async def _after_stop(self, held: HeldTask) -> None:
        if held.stop_reason is StopReason.WITHDRAWN:
            self._note_withdrawn(held, "while its handler ran; handler stopped")
            return
        task = await self._retrying(
            "requeue_task",
            lambda: self.store.requeue_task(
                task_id=held.task_id, claim_token=held.claim_token, message=REQUEUED_MESSAGE
            ),
        )
        if task is not None:
            self.stats.requeued += 1
            log.info(
                "task %s re-queued",
                held.task_id,
                extra={"action": "requeued", "task_id": str(held.task_id)},
            )
            await self._publish(task)

    def _note_withdrawn(self, held: HeldTask, when: str) -> None:
        self.stats.withdrawn += 1
        log.info(
            "task %s was cancelled or reaped %s",
            held.task_id,
            when,
            extra={"action": "withdrawn", "task_id": str(held.task_id)},
        )

    def _withdraw(self, task_id: UUID, reason: StopReason) -> None:
        """Stop a handler, unless its end is already being written."""
        held = self._held.get(task_id)
        if held is None or held.finishing or held.stop_reason is not None or held.job is None:
            return
        held.stop_reason = reason
        held.job.cancel()

    # -- side loops -----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Wake the claim loop on new tasks; stop handlers of cancelled ones."""
        backoff = _Backoff(first_s=0.5)
        channels = [TASK_PENDING_NOTIFY, TASK_CANCELLED_NOTIFY]
        while True:
            try:
                async with listen(self.settings, channels, name="praxiom-runner") as notifies:
                    backoff.reset()
                    self._wakeup.set()  # notifications sent while disconnected are lost: sweep
                    while True:
                        async with translate_errors():
                            note = await notifies.get()
                        if note.channel == TASK_CANCELLED_NOTIFY:
                            self._withdraw(UUID(note.payload), StopReason.WITHDRAWN)
                        else:
                            self._wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "LISTEN connection lost, reconnecting in %.1fs: %s",
                    delay,
                    exc,
                    extra={"action": "listen_retry"},
                )
                await asyncio.sleep(delay)

    async def _every(
        self, interval_s: float, step: Callable[[], Awaitable[None]], name: str
    ) -> None:
        """Run `step` on a fixed cadence: the time a step takes is not added to the wait, so
        a crashed runner's tasks are reaped within RUNNER_STALE_AFTER plus one interval even
        when the reaper's statements are slow."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + interval_s, loop.time())  # a step longer than the interval: no burst
            await asyncio.sleep(due - loop.time())
            try:
                await step()
            except StoreUnavailable as exc:
                self._connected_since = None
                log.warning("%s skipped: %s", name, exc, extra={"action": f"{name}_skipped"})
            except Exception:
                log.exception("%s failed", name, extra={"action": f"{name}_error"})

    async def _beat(self) -> None:
        held = [(h.task_id, h.claim_token) for h in self._held.values() if h.stop_reason is None]
        if not held:
            return
        gone = await self.store.heartbeat(held)
        self._reached_database()
        for task_id in gone:
            self._withdraw(task_id, StopReason.WITHDRAWN)

    def _reached_database(self) -> None:
        if self._connected_since is None:
            self._connected_since = asyncio.get_running_loop().time()

    async def _reap(self) -> None:
        stale_after_s = self.settings.runner_stale_after_s
        stale_tasks = await self.store.find_stale(
            stale_after_s=stale_after_s, grace_s=stale_after_s, limit=_REAP_BATCH
        )
        # After an outage no runner could beat: give every live runner one stale window
        # of connection to beat again before taking anyone's heartbeat age as proof of death.
        self._reached_database()
        assert self._connected_since is not None
        if asyncio.get_running_loop().time() - self._connected_since < stale_after_s:
            return
        for stale in stale_tasks:
            if stale.past_deadline:
                error = timeout_error(self.registry.label_for(stale.task_type), stale.timeout_s)
            else:
                error = runner_lost_error(stale_after_s)
            task = await self.store.reap_task(
                task_id=stale.id, claim_token=stale.claim_token, error=error
            )
            if task is None:
                continue  # another runner reaped it, or its owner finished it, first
            self.stats.reaped += 1
            log.warning(
                "reaped task %s of runner %s: %s",
                stale.id,
                stale.runner_id,
                error,
                extra={"action": "reaped", "task_id": str(stale.id)},
            )
            await self._publish(task)

    # -- shutdown -------------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._held:
            log.info(
                "stopping: waiting up to %gs for %d running task(s)",
                self.settings.runner_shutdown_grace_s,
                len(self._held),
                extra={"action": "draining"},
            )
            await _first_of(self.settings.runner_shutdown_grace_s, self._idle, self._force)
        for task_id in list(self._held):
            self._withdraw(task_id, StopReason.SHUTDOWN)
        jobs = [held.job for held in self._held.values() if held.job is not None]
        if not jobs:
            return
        _, late = await asyncio.wait(jobs, timeout=REQUEUE_WAIT_S)
        await _cancel_and_wait(late)

    # -- helpers --------------------------------------------------------------------------

    async def _publish(self, task: Task) -> None:
        await self.publisher.publish_tasks([task])

    async def _retrying(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """Retry a write while PostgreSQL is unavailable; the caller's timeout bounds it."""
        backoff = _Backoff()
        while True:
            try:
                return await write()
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning(
                    "%s failed, retrying in %.1fs: %s",
                    what,
                    delay,
                    exc,
                    extra={"action": "write_retry"},
                )
                await asyncio.sleep(delay)


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


async def _first_of(timeout_s: float, *events: asyncio.Event) -> None:
    """Wait until any of `events` is set, or `timeout_s` passes."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _cancel_and_wait(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel until done: on Python 3.11, `asyncio.wait_for` (used inside aiopg) can swallow
    a cancellation that races with its result, which would leave a loop running forever."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
