"""The runner's queries, one method per named query in `runner/queries.sql`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from runner.batch import Report
from taskstate.channels import TASK_PENDING_NOTIFY
from taskstate.db import Database, Row, jsonb
from taskstate.sql import load_queries
from taskstate.store import QUERIES as TASK_QUERIES

QUERIES = load_queries("runner")


class RunnerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_task(self, task_id: UUID) -> Row | None:
        return await self.db.fetch_one(TASK_QUERIES["get_task"], {"task_id": task_id})

    async def claim_tasks(
        self, *, runner_id: str, timeouts: Mapping[str, float], limit: int
    ) -> list[Row]:
        return await self.db.fetch_all(
            QUERIES["claim_tasks"],
            {"runner_id": runner_id, "timeouts": jsonb(dict(timeouts)), "limit": limit},
        )

    async def report_progress(self, reports: Sequence[Report]) -> list[Row]:
        """Write a batch of reports; the rows written (a task no longer held is left out)."""
        return await self.db.fetch_all(
            QUERIES["report_progress"],
            {
                "task_ids": [r.task_id for r in reports],
                "claim_tokens": [r.claim_token for r in reports],
                "phases": [r.phase for r in reports],
                "progress_pcts": [r.progress_pct for r in reports],
                "messages": [r.message for r in reports],
            },
        )

    async def complete_task(
        self, *, task_id: UUID, claim_token: UUID, message: str, result_data: Mapping[str, Any]
    ) -> Row | None:
        return await self.db.fetch_one(
            QUERIES["complete_task"],
            {
                "task_id": task_id,
                "claim_token": claim_token,
                "message": message,
                "result_data": jsonb(dict(result_data)),
            },
        )

    async def fail_task(self, *, task_id: UUID, claim_token: UUID, error: str) -> Row | None:
        return await self.db.fetch_one(
            QUERIES["fail_task"], {"task_id": task_id, "claim_token": claim_token, "error": error}
        )

    async def requeue_task(self, *, task_id: UUID, claim_token: UUID, message: str) -> Row | None:
        return await self.db.fetch_one(
            QUERIES["requeue_task"],
            {
                "task_id": task_id,
                "claim_token": claim_token,
                "message": message,
                "notify_channel": TASK_PENDING_NOTIFY,
            },
        )

    async def heartbeat(self, held: Sequence[tuple[UUID, UUID]]) -> list[UUID]:
        """Beat for every (task_id, claim_token) held; return the task ids no longer held."""
        rows = await self.db.fetch_all(
            QUERIES["heartbeat"],
            {"task_ids": [task_id for task_id, _ in held], "claim_tokens": [c for _, c in held]},
        )
        return [row["id"] for row in rows]

    async def find_stale(self, *, stale_after_s: float, grace_s: float, limit: int) -> list[Row]:
        return await self.db.fetch_all(
            QUERIES["find_stale"],
            {"stale_after_s": stale_after_s, "grace_s": grace_s, "limit": limit},
        )

    async def reap_task(self, *, task_id: UUID, claim_token: UUID, error: str) -> Row | None:
        return await self.db.fetch_one(
            QUERIES["reap_task"], {"task_id": task_id, "claim_token": claim_token, "error": error}
        )
