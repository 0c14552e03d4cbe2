"""The runner's two edges in memory, for tests that run it in milliseconds (procrastinate's
InMemoryConnector idea): `FakeRunnerStore` answers `RunnerStore`'s queries from a dict of
tasks and records each call; `RecordingPublisher` keeps what it was handed to publish.

The fake follows `runner/queries.sql`: every write is guarded by `status = 'running'` and the
claim token, and bumps the version. PostgreSQL's failures come on demand: `fail_next` (the
statement never ran) and `lose_answer` (it committed, its answer never came back).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from praxiom_progress.runner.batch import Report
from praxiom_progress.runner.catalogue import CatalogueEntry
from praxiom_progress.runner.ends import End
from praxiom_progress.runner.store import StaleTask
from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Notification
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import PublishStats
from praxiom_progress.taskstate.status import TaskStatus

_UNAVAILABLE = "unavailable"
_LOST_ANSWER = "lost answer"


class FakeNotifications:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Notification | StoreUnavailable] = asyncio.Queue()

    async def get(self) -> Notification:
        note = await self.queue.get()
        if isinstance(note, StoreUnavailable):
            raise note
        return note


class FakeRunnerStore:
    def __init__(self) -> None:
        self.tasks: dict[UUID, Task] = {}
        #: (query name, its arguments), in the order the runner called them.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.listening: list[FakeNotifications] = []
        #: The `task_types` catalogue: each type's newest entry and when it was last served.
        self.task_types: dict[str, tuple[CatalogueEntry, datetime]] = {}
        self._faults: dict[str, list[str]] = {}

    # -- what a test arranges ----------------------------------------------------------------

    def add(self, task_type: str, *, workspace: UUID | None = None, **params: Any) -> UUID:
        """A new pending task, as the gateway's spawn makes it (in a workspace of its own
        unless `workspace` is given)."""
        now = _now()
        task = Task(
            id=uuid4(),
            status=TaskStatus.PENDING,
            task_type=task_type,
            progress_pct=0,
            phase="pending",
            message="Queued",
            started_at=None,
            completed_at=None,
            heartbeat_at=None,
            error=None,
            result_data={},
            version=1,
            workspace_id=workspace or uuid4(),
            params=params,
            created_at=now,
            updated_at=now,
            attempt=0,
            max_attempts=1,
        )
        self.tasks[task.id] = task
        return task.id

    def cancel(self, task_id: UUID, *, notify: bool = True) -> None:
        """The gateway's cancel; `notify=False` is a NOTIFY that never arrived."""
        task = self.tasks[task_id]
        assert task.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
        self._write(
            task, status=TaskStatus.CANCELLED, completed_at=_now(), message="Task cancelled"
        )
        if notify:
            self.notify(TASK_CANCELLED_NOTIFY, str(task_id))

    def age(self, task_id: UUID, *, started_ago_s: float, beat_ago_s: float) -> None:
        """Move a running task's clocks into the past, as if its runner stopped long ago."""
        now = _now()
        self.tasks[task_id] = dataclasses.replace(
            self.tasks[task_id],
            started_at=now - timedelta(seconds=started_ago_s),
            heartbeat_at=now - timedelta(seconds=beat_ago_s),
        )

    def notify(self, channel: str, payload: str) -> None:
        for notifications in self.listening:
            notifications.queue.put_nowait(Notification(channel, payload))

    def fail_next(self, query: str, times: int = 1) -> None:
        """The next `times` calls of `query` raise StoreUnavailable and write nothing."""
        self._faults.setdefault(query, []).extend([_UNAVAILABLE] * times)

    def lose_answer(self, query: str) -> None:
        """The next call of `query` commits its write, then raises StoreUnavailable."""
        self._faults.setdefault(query, []).append(_LOST_ANSWER)

    def called(self, query: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == query]

    # -- RunnerStore -------------------------------------------------------------------------

    @asynccontextmanager
    async def listen(self, channels: Sequence[str]) -> AsyncIterator[FakeNotifications]:
        await self._enter("listen", channels=list(channels))
        notifications = FakeNotifications()
        self.listening.append(notifications)
        try:
            yield notifications
        finally:
            self.listening.remove(notifications)

    async def get_task(self, task_id: UUID) -> Task | None:
        fault = await self._enter("get_task", task_id=task_id)
        return self._answer(fault, self.tasks.get(task_id))

    async def claim_tasks(
        self,
        *,
        runner_id: str,
        timeouts: Mapping[str, float],
        limit: int,
        max_attempts: Mapping[str, int] | None = None,
        workspace_cap: int = 0,
    ) -> list[Task]:
        fault = await self._enter(
            "claim_tasks", runner_id=runner_id, limit=limit, workspace_cap=workspace_cap
        )
        now = _now()
        due = [
            task
            for task in self.tasks.values()
            if task.status == TaskStatus.PENDING
            and task.task_type in timeouts
            and (task.run_after is None or task.run_after <= now)
        ]
        claimed = [
            self._claim(task, runner_id, timeouts, max_attempts, now)
            for task in self._fair_order(due, workspace_cap)[:limit]
        ]
        return self._answer(fault, claimed)

    def _fair_order(self, due: list[Task], workspace_cap: int) -> list[Task]:
        """As `praxiom_claim_tasks` orders them: by how many would run in the task's workspace
        once it runs (its `slot`), then oldest first; none past the cap."""
        running: dict[UUID, int] = {}
        for task in self.tasks.values():
            if task.status == TaskStatus.RUNNING:
                running[task.workspace_id] = running.get(task.workspace_id, 0) + 1
        nth: dict[UUID, int] = {}
        slotted = []
        for task in sorted(due, key=lambda task: (task.created_at or _now(), str(task.id))):
            nth[task.workspace_id] = nth.get(task.workspace_id, 0) + 1
            slot = running.get(task.workspace_id, 0) + nth[task.workspace_id]
            if workspace_cap <= 0 or slot <= workspace_cap:
                slotted.append((slot, task.created_at or _now(), str(task.id), task))
        slotted.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in slotted]

    def _claim(
        self,
        task: Task,
        runner_id: str,
        timeouts: Mapping[str, float],
        max_attempts: Mapping[str, int] | None,
        now: datetime,
    ) -> Task:
        return self._write(
            task,
            status=TaskStatus.RUNNING,
            phase="running",
            progress_pct=0,
            message="Started",
            started_at=now,
            heartbeat_at=now,
            run_after=None,
            runner_id=runner_id,
            claim_token=uuid4(),
            timeout_s=timeouts[task.task_type],
            attempt=(task.attempt or 0) + 1,
            max_attempts=(max_attempts or {}).get(task.task_type, task.max_attempts),
        )

    async def report_progress(self, reports: Sequence[Report]) -> list[Task]:
        fault = await self._enter("report_progress", reports=list(reports))
        written = []
        for r in reports:
            task = self._held(r.task_id, r.claim_token)
            if task is None:
                continue
            merged = {
                **task.result_data,
                "phase": r.phase,
                "progress_pct": r.progress_pct,
                "message": r.message,
            }
            changes = {"phase": r.phase, "progress_pct": r.progress_pct, "message": r.message}
            written.append(self._write(task, **changes, result_data=merged, heartbeat_at=_now()))
        return self._answer(fault, written)

    async def complete_task(
        self, *, task_id: UUID, claim_token: UUID, message: str, result_data: Mapping[str, Any]
    ) -> Task | None:
        fault = await self._enter("complete_task", task_id=task_id, message=message)
        task = self._held(task_id, claim_token)
        if task is not None:
            task = self._write(
                task,
                status=TaskStatus.COMPLETED,
                phase="complete",
                progress_pct=100,
                message=message,
                result_data=dict(result_data),
                error=None,
                completed_at=_now(),
                heartbeat_at=_now(),
            )
        return self._answer(fault, task)

    async def fail_task(self, *, task_id: UUID, claim_token: UUID, error: str) -> Task | None:
        fault = await self._enter("fail_task", task_id=task_id, error=error)
        task = self._held(task_id, claim_token)
        if task is not None:
            task = self._write(
                task,
                status=TaskStatus.FAILED,
                error=error,
                completed_at=_now(),
                heartbeat_at=_now(),
            )
        return self._answer(fault, task)

    async def end_tasks(self, ends: Sequence[End]) -> list[Task]:
        """The batch as its ends one by one, recorded as `complete_task` / `fail_task` calls
        (so their faults apply); a fault fails the whole batch, as one statement would."""
        self.calls.append(("end_tasks", {"task_ids": [end.task_id for end in ends]}))
        written = []
        for end in ends:
            if end.completed:
                task = await self.complete_task(
                    task_id=end.task_id,
                    claim_token=end.claim_token,
                    message=end.message or "",
                    result_data=end.result_data,
                )
            else:
                task = await self.fail_task(
                    task_id=end.task_id, claim_token=end.claim_token, error=end.error or ""
                )
            if task is not None:
                written.append(task)
        return written

    async def requeue_task(self, *, task_id: UUID, claim_token: UUID, message: str) -> Task | None:
        fault = await self._enter("requeue_task", task_id=task_id, message=message)
        task = self._held(task_id, claim_token)
        if task is not None:
            task = self._write(
                task,
                status=TaskStatus.PENDING,
                phase="pending",
                progress_pct=0,
                message=message,
                result_data={},
                started_at=None,
                heartbeat_at=None,
                runner_id=None,
                claim_token=None,
                timeout_s=None,
                attempt=max((task.attempt or 0) - 1, 0),
            )
            self.notify(TASK_PENDING_NOTIFY, str(task_id))
        return self._answer(fault, task)

    async def retry_task(
        self, *, task_id: UUID, claim_token: UUID, message: str, delay_s: float
    ) -> Task | None:
        fault = await self._enter("retry_task", task_id=task_id, message=message, delay_s=delay_s)
        task = self._held(task_id, claim_token)
        if task is not None:
            task = self._write(
                task,
                status=TaskStatus.PENDING,
                phase="retrying",
                progress_pct=0,
                message=message,
                result_data={},
                error=None,
                started_at=None,
                heartbeat_at=None,
                runner_id=None,
                claim_token=None,
                timeout_s=None,
                run_after=_now() + timedelta(seconds=delay_s),
            )
        return self._answer(fault, task)

    async def heartbeat(self, held: Sequence[tuple[UUID, UUID]]) -> list[UUID]:
        fault = await self._enter("heartbeat", held=list(held))
        gone = []
        for task_id, claim_token in held:
            task = self._held(task_id, claim_token)
            if task is None:
                gone.append(task_id)
            else:
                self._write(task, heartbeat_at=_now())
        return self._answer(fault, gone)

    async def find_stale(
        self, *, stale_after_s: float, grace_s: float, limit: int
    ) -> list[StaleTask]:
        fault = await self._enter("find_stale", stale_after_s=stale_after_s, grace_s=grace_s)
        now = _now()
        stale = []
        for task in self.tasks.values():
            if task.status != TaskStatus.RUNNING:
                continue
            assert task.started_at and task.heartbeat_at and task.timeout_s is not None
            assert task.claim_token is not None and task.runner_id is not None
            deadline = task.started_at + timedelta(seconds=task.timeout_s + grace_s)
            beat_is_stale = task.heartbeat_at < now - timedelta(seconds=stale_after_s)
            if beat_is_stale or deadline < now:
                stale.append(
                    StaleTask(
                        task.id,
                        task.claim_token,
                        task.task_type,
                        task.timeout_s,
                        task.runner_id,
                        deadline < now,
                    )
                )
        return self._answer(fault, stale[:limit])

    async def reap_task(self, *, task_id: UUID, claim_token: UUID, error: str) -> Task | None:
        fault = await self._enter("reap_task", task_id=task_id, error=error)
        task = self._held(task_id, claim_token)
        if task is not None:
            task = self._write(task, status=TaskStatus.FAILED, error=error, completed_at=_now())
        return self._answer(fault, task)

    async def record_task_types(self, entries: Sequence[CatalogueEntry]) -> None:
        fault = await self._enter("record_task_types", names=[e.name for e in entries])
        for entry in entries:
            self.task_types[entry.name] = (entry, _now())
        return self._answer(fault, None)

    # -- inside ------------------------------------------------------------------------------

    async def _enter(self, query: str, **args: Any) -> str | None:
        """Record the call; raise when PostgreSQL is planned to be away for it."""
        await asyncio.sleep(0)  # a real statement always yields to the loop
        self.calls.append((query, args))
        planned = self._faults.get(query)
        fault = planned.pop(0) if planned else None
        if fault == _UNAVAILABLE:
            raise StoreUnavailable(f"PostgreSQL unavailable (fake, {query})")
        return fault

    def _answer(self, fault: str | None, answer: Any) -> Any:
        if fault == _LOST_ANSWER:
            raise StoreUnavailable("PostgreSQL unavailable (fake: the answer was lost)")
        return answer

    def _held(self, task_id: UUID, claim_token: UUID) -> Task | None:
        task = self.tasks.get(task_id)
        if task is None or task.status != TaskStatus.RUNNING or task.claim_token != claim_token:
            return None
        return task

    def _write(self, task: Task, **changes: Any) -> Task:
        """Every write bumps the version, as schema.sql's trigger does."""
        written = dataclasses.replace(task, **changes, version=task.version + 1, updated_at=_now())
        self.tasks[task.id] = written
        return written


class RecordingPublisher:
    """Stands in for `ProgressPublisher`: keeps every task handed to `publish_tasks`."""

    def __init__(self) -> None:
        self.published: list[Task] = []
        #: The tasks of each call that had any (one call is one Redis round trip).
        self.calls: list[list[Task]] = []
        self.stats = PublishStats()

    async def publish_tasks(self, tasks: Sequence[Task]) -> int:
        if tasks:
            self.calls.append(list(tasks))
        self.published.extend(tasks)
        self.stats.published += len(tasks)
        return len(tasks)

    def of(self, task_id: UUID) -> list[Task]:
        return [task for task in self.published if task.id == task_id]


def _now() -> datetime:
    return datetime.now(UTC)
