"""The gateway's reads, one method per named query in `gateway/queries.sql`."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from taskstate.batching import GroupedCalls
from taskstate.db import Database, Row
from taskstate.sql import load_queries

QUERIES = load_queries("gateway")


@dataclass(frozen=True)
class TaskAccess:
    """What one request may see of one task."""

    user_id: UUID | None  # None: the token is missing, unknown, expired or revoked
    is_member: bool
    task: Row | None  # None: no such task (or no valid token)


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    workspace_ids: frozenset[UUID]


class GatewayStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # A reconnect storm authorizes thousands of streams at once: one statement answers
        # all that arrive while the previous one runs, instead of one statement each.
        self._authorize: GroupedCalls[tuple[bytes, UUID | None], TaskAccess] = GroupedCalls(
            self._authorize_many, in_flight=2, max_batch=500
        )

    async def authorize_task(self, token_hash: bytes, task_id: UUID | None) -> TaskAccess:
        return await self._authorize.call((token_hash, task_id))

    async def _authorize_many(self, requests: list[tuple[bytes, UUID | None]]) -> list[TaskAccess]:
        rows = await self.db.fetch_all(
            QUERIES["authorize_task"],
            {
                "token_hashes": [token_hash for token_hash, _ in requests],
                "task_ids": [task_id for _, task_id in requests],
            },
        )
        assert len(rows) == len(requests)  # the query answers every pair, in order
        return [_access(row) for row in rows]

    async def principal(self, token_hash: bytes) -> Principal | None:
        row = await self.db.fetch_one(QUERIES["principal_workspaces"], {"token_hash": token_hash})
        if row is None:
            return None
        return Principal(row["user_id"], frozenset(row["workspace_ids"]))


def _access(row: Row) -> TaskAccess:
    del row["n"]
    return TaskAccess(
        user_id=row.pop("user_id"),
        is_member=row.pop("is_member"),
        task=row if row.pop("task_exists") else None,
    )
