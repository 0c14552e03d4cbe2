"""The workspace stream's reads (gateway.workspace), one method per named query in
`gateway/queries.sql`; each re-checks the caller in the statement that reads the tasks.

The mark each read returns is its statement's snapshot xmin: every transaction below it had
finished (committed or not) when the statement ran, so its writes are in what the read saw.
It is what a workspace stream's events carry as their `id:`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from praxiom_progress.gateway.decision import Decision, decide
from praxiom_progress.gateway.store import QUERIES, Caller
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task


@dataclass(frozen=True)
class WorkspaceRead:
    """One read of a workspace's tasks, newest first; `allowed` False: the caller lost access
    (no tasks then); `known` False: the `since` asked for is no mark of this database."""

    allowed: bool
    mark: int
    tasks: list[Task]
    known: bool = True


class WorkspaceReads:
    def __init__(self, db: Database, *, recent_s: float, max_tasks: int) -> None:
        self.db = db
        self._recent_s = recent_s
        self._max_tasks = max_tasks

    async def authorize(self, digest: bytes, workspace_id: UUID) -> tuple[Caller | None, Decision]:
        """May this token follow this workspace? 401, then 404, then 403, as for a task."""
        row = await self.db.fetch_one(
            QUERIES["authorize_workspace"], {"token_hash": digest, "workspace_id": workspace_id}
        )
        assert row is not None  # one row, whatever the token
        caller = Caller.from_row(row)
        decision = decide(
            authenticated=caller is not None,
            exists=bool(row["workspace_exists"]),
            may_see=bool(row["may_see"]),
            read_only=False,
            write=False,
        )
        return caller, decision

    async def snapshot(self, digest: bytes, workspace_id: UUID) -> WorkspaceRead:
        """Every task not finished, and those finished within SSE_WORKSPACE_RECENT."""
        rows = await self.db.fetch_all(
            QUERIES["workspace_snapshot"],
            {
                "token_hash": digest,
                "workspace_id": workspace_id,
                "recent_s": self._recent_s,
                "max_tasks": self._max_tasks,
            },
        )
        return _read(rows)

    async def changes(self, digest: bytes, workspace_id: UUID, since: int) -> WorkspaceRead:
        """Every task whose last write's transaction is not below `since` (a mark)."""
        rows = await self.db.fetch_all(
            QUERIES["workspace_changes"],
            {
                "token_hash": digest,
                "workspace_id": workspace_id,
                "since": since,
                "max_tasks": self._max_tasks,
            },
        )
        return _read(rows, known=bool(rows[0]["known"]))

    async def refused(self, pairs: Sequence[tuple[UUID, bytes]]) -> list[Decision | None]:
        """Many (workspace id, token digest) pairs re-checked in one statement: each one's
        refusal (401, 403), or None while it may still see the workspace."""
        if not pairs:
            return []
        rows = await self.db.fetch_all(
            QUERIES["workspace_access"],
            {
                "workspace_ids": [workspace_id for workspace_id, _ in pairs],
                "token_hashes": [digest for _, digest in pairs],
            },
        )
        return [
            Decision.UNAUTHENTICATED
            if not row["token_ok"]
            else None
            if row["may_see"]
            else Decision.FORBIDDEN
            for row in rows
        ]


def _read(rows: list[dict[str, object]], *, known: bool = True) -> WorkspaceRead:
    first = rows[0]  # one row at least: the mark and the access, tasks or not
    tasks = [Task.from_row(row) for row in rows if row["id"] is not None]
    return WorkspaceRead(bool(first["allowed"]), int(str(first["mark"])), tasks, known)
