"""The runner's queries, one method per named query in `runner/queries.sql`; each write returns
the `Task` it committed (None when its guard matched nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from praxiom_progress.runner.batch import Report
from praxiom_progress.runner.catalogue import CatalogueEntry
from praxiom_progress.runner.ends import End
from praxiom_progress.taskstate.channels import TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Database, Notifications, jsonb
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.sql import load_queries
from praxiom_progress.taskstate.store import QUERIES as TASK_QUERIES

QUERIES = load_queries("praxiom_progress.runner")


@dataclass(frozen=True, slots=True)
class StaleTask:
    """A running task the reaper may end: its runner stopped beating, or it is past its
    deadline (`past_deadline`: its timeout plus a grace)."""

    id: UUID
    claim_token: UUID
    task_type: str
    timeout_s: float
    runner_id: str
    past_deadline: bool
    label: str | None = None  # the catalogue's; None when the type is not catalogued

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StaleTask:
        return cls(
            row["id"],
            row["claim_token"],
            row["task_type"],
            row["timeout_s"],
            row["runner_id"],
            row["past_deadline"],
            row["label"],
        )


class RunnerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def listen(self, channels: Sequence[str]) -> AsyncIterator[Notifications]:
        """The notifications on `channels` until exit; `get()` raises StoreUnavailable once
        the connection is lost (notifications sent meanwhile are lost too)."""
        async with self.db.listen(channels, name="praxiom-runner") as notifications:
            yield notifications

    async def get_task(self, task_id: UUID) -> Task | None:
        return _task(await self.db.fetch_one(TASK_QUERIES["get_task"], {"task_id": task_id}))

    async def claim_tasks(
        self,
        *,
        runner_id: str,
        timeouts: Mapping[str, float],
        limit: int,
        max_attempts: Mapping[str, int] | None = None,
        workspace_cap: int = 0,
    ) -> list[Task]:
        """`max_attempts` by type (a type left out keeps the row's, 1 unless set before);
        `workspace_cap`: the most tasks one workspace may have running (0: no cap)."""
        rows = await self.db.fetch_all(
            QUERIES["claim_tasks"],
            {
                "runner_id": runner_id,
                "timeouts": jsonb(dict(timeouts)),
                "max_attempts": jsonb(dict(max_attempts or {})),
                "limit": limit,
                "workspace_cap": workspace_cap,
            },
        )
        return [Task.from_row(row) for row in rows]

    async def report_progress(self, reports: Sequence[Report]) -> list[Task]:
        """Write a batch of reports; the tasks written (a task no longer held is left out)."""
        rows = await self.db.fetch_all(
            QUERIES["report_progress"],
            {
                "task_ids": [r.task_id for r in reports],
                "claim_tokens": [r.claim_token for r in reports],
                "phases": [r.phase for r in reports],
                "progress_pcts": [r.progress_pct for r in reports],
                "messages": [r.message for r in reports],
            },
        )
        return [Task.from_row(row) for row in rows]

    async def end_tasks(self, ends: Sequence[End]) -> list[Task]:
        """Write a batch of task ends; the tasks written (a task no longer held is left out)."""
        rows = await self.db.fetch_all(
            QUERIES["end_tasks"],
            {
                "task_ids": [e.task_id for e in ends],
                "claim_tokens": [e.claim_token for e in ends],
                "completed": [e.completed for e in ends],
                "messages": [e.message for e in ends],
                "results": [e.result_json() for e in ends],
                "errors": [e.error for e in ends],
            },
        )
        return [Task.from_row(row) for row in rows]

    async def requeue_task(self, *, task_id: UUID, claim_token: UUID, message: str) -> Task | None:
        row = await self.db.fetch_one(
            QUERIES["requeue_task"],
            {
                "task_id": task_id,
                "claim_token": claim_token,
                "message": message,
                "notify_channel": TASK_PENDING_NOTIFY,
            },
        )
        return _task(row)

    async def retry_task(
        self, *, task_id: UUID, claim_token: UUID, message: str, delay_s: float
    ) -> Task | None:
        row = await self.db.fetch_one(
            QUERIES["retry_task"],
            {
                "task_id": task_id,
                "claim_token": claim_token,
                "message": message,
                "delay_s": delay_s,
            },
        )
        return _task(row)

    async def heartbeat(self, held: Sequence[tuple[UUID, UUID]]) -> list[UUID]:
        """Beat for every (task_id, claim_token) held; return the task ids no longer held."""
        rows = await self.db.fetch_all(
            QUERIES["heartbeat"],
            {"task_ids": [task_id for task_id, _ in held], "claim_tokens": [c for _, c in held]},
        )
        return [row["id"] for row in rows]

    async def find_stale(
        self, *, stale_after_s: float, grace_s: float, limit: int
    ) -> list[StaleTask]:
        rows = await self.db.fetch_all(
            QUERIES["find_stale"],
            {"stale_after_s": stale_after_s, "grace_s": grace_s, "limit": limit},
        )
        return [StaleTask.from_row(row) for row in rows]

    async def reap_task(self, *, task_id: UUID, claim_token: UUID, error: str) -> Task | None:
        row = await self.db.fetch_one(
            QUERIES["reap_task"], {"task_id": task_id, "claim_token": claim_token, "error": error}
        )
        return _task(row)

    async def record_task_types(self, entries: Sequence[CatalogueEntry]) -> None:
        """Write this runner's types to the catalogue, marking them served now."""
        await self.db.fetch_all(
            QUERIES["record_task_types"], {"types": jsonb([e.as_json() for e in entries])}
        )


def _task(row: Mapping[str, Any] | None) -> Task | None:
    return Task.from_row(row) if row is not None else None
