"""The runner: claims tasks and hands each to `runner.execution`; stops them when they are
withdrawn or when it shuts down.

One claim loop and four side loops (LISTEN, heartbeat, reaper, the task-type catalogue).
Every write to a task goes through `RunnerStore`, guarded by the claim token, and is
published only after it has committed (`runner.writer`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from uuid import UUID, uuid4

from praxiom_progress.runner.backoff import Backoff
from praxiom_progress.runner.batch import ProgressBatcher
from praxiom_progress.runner.catalogue import catalogue_entries
from praxiom_progress.runner.execution import HeldTask, RunnerStats, StopReason, TaskExecutor
from praxiom_progress.runner.handlers import HandlerRegistry, timeout_error
from praxiom_progress.runner.hooks import run_hooks
from praxiom_progress.runner.invocation import HandlerInvoker
from praxiom_progress.runner.slots import free_slots
from praxiom_progress.runner.store import RunnerStore, StaleTask
from praxiom_progress.runner.throttle import ProgressThrottle
from praxiom_progress.runner.watchdog import LoopWatchdog
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.cancellation import cancel_and_wait
from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import ListenUnheard
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher
from praxiom_progress.taskstate.settings import Settings

log = logging.getLogger("runner")

#: How long, after the grace, shutdown waits for re-queue writes before giving up on them.
REQUEUE_WAIT_S = 10.0
_REAP_BATCH = 100
#: Claim this long after a retry's due time, so the database's clock has passed it too.
_RETRY_SLACK_S = 0.01
_CHANNELS = (TASK_PENDING_NOTIFY, TASK_CANCELLED_NOTIFY)


def runner_lost_error(stale_after_s: float) -> str:
    return f"Task runner lost: no heartbeat for over {stale_after_s:g}s"


class Runner:
    def __init__(
        self,
        settings: Settings,
        store: RunnerStore,
        publisher: ProgressPublisher,
        registry: HandlerRegistry,
        *,
        runner_id: str | None = None,
        on_progress_write: Callable[[float], None] | None = None,
    ) -> None:
        """`on_progress_write` is told how long each report_progress statement took."""
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.registry = registry
        self.runner_id = runner_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.stats = RunnerStats()
        self._writer = TaskWriter(publisher)
        batcher = ProgressBatcher(
            store.report_progress,
            self._writer,
            in_flight=settings.runner_progress_statements,
            on_write=on_progress_write,
            publish_within_s=settings.runner_progress_publish_within_s,
        )
        #: One per runner process: filled by the start-up hooks, handed to every handler.
        self.state: MutableMapping[str, Any] = {}
        self.throttle = ProgressThrottle(batcher, settings.runner_progress_min_interval_s)
        self._executor = TaskExecutor(
            store,
            self._writer,
            self.throttle,
            self.stats,
            on_retry=self._retry_due_in,
            on_handler_done=lambda: self._wakeup.set(),  # its slot is free: claim
            state=self.state,
            kill_grace_s=settings.runner_kill_grace_s,
        )
        self.watchdog = LoopWatchdog(settings.runner_loop_stall_s, self._handler_of)
        self._timeouts = registry.timeouts(settings)
        self._max_attempts = {t: h.max_attempts for t in registry if (h := registry.get(t))}
        # Loop times at which retries this runner let go become due: it wakes to claim them.
        self._retries_due: list[float] = []
        self._catalogue = catalogue_entries(registry, self._timeouts)
        self._held: dict[UUID, HeldTask] = {}
        self._wakeup = asyncio.Event()
        #: Set while the LISTEN for new and cancelled tasks is up: a readiness signal (until
        #: then only the claim sweeps find new tasks), which tests wait for instead of sleeping.
        self.listening = asyncio.Event()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Loop time since which this runner has reached PostgreSQL without a failure.
        self._connected_since: float | None = None

    @property
    def invoker(self) -> HandlerInvoker:
        """How handlers are called: their threads and child processes (read by the metrics)."""
        return self._executor.invoker

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
        """Run until `stop()`; on return no task of this runner is left running. The start-up
        hooks run first (a failing one stops the runner before it claims anything), the
        shutdown hooks last."""
        await run_hooks(self.registry.startup_hooks, self.state, stage="startup")
        self.watchdog.start(asyncio.get_running_loop())
        try:
            await self._run()
        finally:
            self.watchdog.stop()
            await run_hooks(self.registry.shutdown_hooks, self.state, stage="shutdown")

    async def _run(self) -> None:
        log.info(
            "runner %s started: types %s, concurrency %d",
            self.runner_id,
            ", ".join(sorted(self._timeouts)),
            self.settings.runner_concurrency,
            extra={"action": "runner_started"},
        )
        try:
            await self.publish_catalogue()
        except StoreUnavailable as exc:  # the heartbeat writes it again once PostgreSQL is back
            log.warning("catalogue not written: %s", exc, extra={"action": "catalogue_skipped"})
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
            # At the heartbeat's cadence, but on its own: a failing write here never
            # delays a heartbeat.
            asyncio.create_task(
                self._every(
                    self.settings.runner_heartbeat_interval_s, self.publish_catalogue, "catalogue"
                ),
                name="runner-catalogue",
            ),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            await cancel_and_wait(side)
            log.info("runner %s stopped", self.runner_id, extra={"action": "runner_stopped"})

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            self._wakeup.clear()
            free = free_slots(self._held.values(), self.settings.runner_concurrency)
            if free > 0:
                try:
                    tasks = await self.store.claim_tasks(
                        runner_id=self.runner_id,
                        timeouts=self._timeouts,
                        limit=free,
                        max_attempts=self._max_attempts,
                        workspace_cap=self.settings.workspace_max_running,
                    )
                except StoreUnavailable as exc:
                    self._connected_since = None
                    await backoff.wait_and_warn(
                        "claim failed, retrying", exc, action="claim_retry", stop=self._stopping
                    )
                    continue
                backoff.reset()
                self._reached_database()
                for task in tasks:
                    self._start(task)
            await _first_of(self._next_claim_in(), self._wakeup)

    def _retry_due_in(self, delay_s: float) -> None:
        self._retries_due.append(asyncio.get_running_loop().time() + delay_s)
        self._wakeup.set()  # the claim loop recomputes how long it may sleep

    def _next_claim_in(self) -> float:
        """How long the claim loop may sleep: the slow poll, or until the next retry this
        runner let go is due (its `run_after` was set before the answer that told us, so by
        then the database's clock has passed it). Other runners' retries wait for the poll."""
        now = asyncio.get_running_loop().time()
        self._retries_due = [due for due in self._retries_due if due + _RETRY_SLACK_S > now]
        wait_s = self.settings.runner_poll_interval_s
        if self._retries_due:
            wait_s = min(wait_s, min(self._retries_due) - now + _RETRY_SLACK_S)
        return wait_s

    def _start(self, task: Task) -> None:
        handler = self.registry.get(task.task_type)
        assert handler is not None  # claim_tasks only claims registered types
        # A claim sets both; the store returns the whole row.
        assert task.claim_token is not None and task.timeout_s is not None
        held = HeldTask(
            task.id,
            task.claim_token,
            handler,
            task.timeout_s,
            task.params or {},
            attempt=task.attempt or 1,
            max_attempts=task.max_attempts or 1,
        )
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

    async def _execute(self, held: HeldTask, claimed: Task) -> None:
        try:
            await self._executor.execute(held, claimed)
        finally:
            del self._held[held.task_id]
            if not self._held:
                self._idle.set()
            self._wakeup.set()

    def _handler_of(self, job: asyncio.Task[Any] | None) -> tuple[str, str] | None:
        """The (task type, task id) whose handler runs as `job` (asked by the watchdog's
        thread while the loop is blocked)."""
        for held in list(self._held.values()):
            if held.job is job and job is not None:
                return held.handler.task_type, str(held.task_id)
        return None

    def _withdraw(self, task_id: UUID, reason: StopReason) -> None:
        held = self._held.get(task_id)
        if held is not None:
            held.withdraw(reason)

    # -- side loops -----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Wake the claim loop on new tasks; stop handlers of cancelled ones."""
        backoff = Backoff(first_s=0.5)
        while True:
            try:
                async with self.store.listen(_CHANNELS) as notifications:
                    backoff.reset()
                    self.listening.set()
                    self._wakeup.set()  # notifications sent while disconnected are lost: sweep
                    while True:
                        note = await notifications.get()
                        if note.channel == TASK_CANCELLED_NOTIFY:
                            self._withdraw(UUID(note.payload), StopReason.WITHDRAWN)
                        else:
                            self._wakeup.set()
            except ListenUnheard as exc:  # behind PgBouncer without DATABASE_LISTEN_URL
                log.warning("%s; polling every RUNNER_POLL_INTERVAL meanwhile", exc,
                            extra={"action": "listen_unheard"})  # fmt: skip
                await asyncio.sleep(self.settings.database_listen_retry_s)
            except Exception as exc:
                self.listening.clear()
                await backoff.wait_and_warn(
                    "LISTEN connection lost, reconnecting", exc, action="listen_retry"
                )

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

    async def publish_catalogue(self) -> None:
        """Record the types this runner serves, as served now (at start, on every beat)."""
        await self.store.record_task_types(self._catalogue)

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
            await self._writer.write_one(self._reap_one(stale))

    async def _reap_one(self, stale: StaleTask) -> Task | None:
        """Fail a stale task for its lost runner; None when another runner reaped it, or its
        owner finished it, first."""
        if stale.past_deadline:
            label = self.registry.label_for(stale.task_type)
            if stale.task_type not in self.registry and stale.label:
                label = stale.label  # another runner's type: the catalogue has its label
            error = timeout_error(label, stale.timeout_s)
        else:
            error = runner_lost_error(self.settings.runner_stale_after_s)
        task = await self.store.reap_task(
            task_id=stale.id, claim_token=stale.claim_token, error=error
        )
        if task is not None:
            self.stats.reaped += 1
            log.warning(
                "reaped task %s of runner %s: %s",
                stale.id,
                stale.runner_id,
                error,
                extra={"action": "reaped", "task_id": str(stale.id)},
            )
        return task

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
        await cancel_and_wait(late)


async def _first_of(timeout_s: float, *events: asyncio.Event) -> None:
    """Wait until any of `events` is set, or `timeout_s` passes."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
