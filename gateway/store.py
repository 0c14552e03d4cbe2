"""The gateway's reads, one method per named query in `gateway/queries.sql`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from taskstate.batching import GroupedCalls
from taskstate.db import Database, Row
from taskstate.sql import load_queries

QUERIES = load_queries("gateway")


@dataclass(frozen=True)
class Caller:
    """Whom a valid token acts for: a user (through memberships) or a service (through grants)."""

    token_id: UUID
    user_id: UUID | None
    service_name: str | None
    read_only: bool

    @property
    def key(self) -> str:
        """The principal as logs and per-principal limits name it (never the token)."""
        if self.user_id is not None:
            return str(self.user_id)
        return f"service:{self.service_name}"


def _caller(row: Row) -> Caller | None:
    token_id = row.pop("token_id")
    user_id, service = row.pop("user_id"), row.pop("service_name")
    read_only = bool(row.pop("read_only"))
    return None if token_id is None else Caller(token_id, user_id, service, read_only)


@dataclass(frozen=True)
class TaskAccess:
    """What one request may see of one task."""

    caller: Caller | None  # None: the token is missing, unknown, expired or revoked
    is_member: bool  # the caller may act in the task's workspace
    task: Row | None  # None: no such task (or no valid token)


@dataclass(frozen=True)
class Principal:
    caller: Caller
    workspace_ids: frozenset[UUID]
    all_workspaces: bool
    workspace_exists: bool  # the workspace asked about, if any

    @property
    def user_id(self) -> UUID | None:
        return self.caller.user_id

    def may_act_in(self, workspace_id: UUID) -> bool:
        if self.all_workspaces:
            return self.workspace_exists
        return workspace_id in self.workspace_ids


@dataclass(frozen=True)
class StreamRereads:
    """The idle re-read of many streams: rows by task id, and the (task id, token digest)
    pairs refused now, with the status their reconnect would get (401 or 403)."""

    rows: dict[UUID, Row]
    refused: dict[tuple[UUID, bytes], int]


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

    async def principal(
        self, token_hash: bytes, workspace_id: UUID | None = None
    ) -> Principal | None:
        row = await self.db.fetch_one(
            QUERIES["principal_workspaces"],
            {"token_hash": token_hash, "workspace_id": workspace_id},
        )
        if row is None:
            return None
        all_workspaces = bool(row.pop("all_workspaces"))
        workspace_ids = frozenset(row.pop("workspace_ids"))
        workspace_exists = bool(row.pop("workspace_exists"))
        caller = _caller(row)
        assert caller is not None
        return Principal(caller, workspace_ids, all_workspaces, workspace_exists)

    async def reread_streams(self, pairs: Iterable[tuple[UUID, bytes]]) -> StreamRereads:
        """Many streams' rows and callers' access in one round trip (`reread_streams`)."""
        task_ids, digests = [], []
        for task_id, digest in pairs:
            task_ids.append(task_id)
            digests.append(digest)
        found = await self.db.fetch_all(
            QUERIES["reread_streams"], {"task_ids": task_ids, "token_hashes": digests}
        )
        rows: dict[UUID, Row] = {}
        refused: dict[tuple[UUID, bytes], int] = {}
        for row in found:
            for status, column in ((401, "refused_unauthenticated"), (403, "refused_forbidden")):
                for digest in row.pop(column):
                    refused[(row["id"], bytes(digest))] = status
            rows[row["id"]] = row
        return StreamRereads(rows, refused)


def _access(row: Row) -> TaskAccess:
    del row["n"]
    caller = _caller(row)
    return TaskAccess(
        caller=caller,
        is_member=bool(row.pop("is_member")),
        task=row if row.pop("task_exists") else None,
    )
