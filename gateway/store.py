"""The gateway's reads, one method per named query in `gateway/queries.sql`."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

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

    async def authorize_task(self, token_hash: bytes, task_id: UUID | None) -> TaskAccess:
        row = await self.db.fetch_one(
            QUERIES["authorize_task"], {"token_hash": token_hash, "task_id": task_id}
        )
        assert row is not None  # the query always returns one row
        return TaskAccess(
            user_id=row.pop("user_id"),
            is_member=row.pop("is_member"),
            task=row if row.pop("task_exists") else None,
        )

    async def principal(self, token_hash: bytes) -> Principal | None:
        row = await self.db.fetch_one(QUERIES["principal_workspaces"], {"token_hash": token_hash})
        if row is None:
            return None
        return Principal(row["user_id"], frozenset(row["workspace_ids"]))
