"""The gateway's reads, one method per named query in `gateway/queries.sql`.

Each answers with typed values: a `Task`, and a `Decision` for what the caller may do with it;
nothing here knows HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Generic, TypeVar
from uuid import UUID

from praxiom_progress.gateway.decision import Decision, decide
from praxiom_progress.gateway.replica import Reads
from praxiom_progress.gateway.token_use import TokenUse
from praxiom_progress.taskstate.batching import GroupedCalls
from praxiom_progress.taskstate.db import Database, Row
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.sql import load_queries
from praxiom_progress.taskstate.status import TERMINAL_STATUSES, TaskStatus

QUERIES = load_queries("praxiom_progress.gateway")

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """Whom a valid token acts for: a user (through memberships) or a service (through grants)."""

    token_id: UUID
    user_id: UUID | None
    service_name: str | None
    read_only: bool

    @cached_property
    def key(self) -> str:
        """The principal as logs and per-principal limits name it (never the token). One
        string for both: an open stream's log context and its slot hold it all its life."""
        if self.user_id is not None:
            return str(self.user_id)
        return f"service:{self.service_name}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Caller | None:
        """The caller a query's token columns name; None for a missing or invalid token."""
        if row["token_id"] is None:
            return None
        return cls(row["token_id"], row["user_id"], row["service_name"], bool(row["read_only"]))


@dataclass(frozen=True, slots=True)
class TaskHead:
    """What a stream's connect decides on before it subscribes; its row is read after."""

    status: TaskStatus
    version: int

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class TaskAccess(Generic[T]):
    """What one request may do with one task: the decision, and the task (a `Task`, or a
    stream's `TaskHead`) only when allowed."""

    caller: Caller | None  # None: the token is missing, unknown, expired or revoked
    decision: Decision
    task: T | None


@dataclass(frozen=True)
class _Found:
    """One answer of `authorize_task` or `authorize_stream`, before the write flag is applied
    (`row`: the task's columns the query returns, NULL when it has none)."""

    caller: Caller | None
    may_see: bool
    exists: bool
    row: Row


@dataclass(frozen=True)
class Principal:
    """A valid token's principal and the workspaces it may act in (for spawning)."""

    caller: Caller
    workspace_ids: frozenset[UUID]
    all_workspaces: bool

    def workspace_for(self, requested: UUID | None) -> tuple[Decision, UUID | None]:
        """Where a spawn goes: the workspace asked for, if the caller may act in it; without
        one, the caller's only workspace. A service granted every workspace may name any: the
        insert refuses one that does not exist."""
        if requested is None:
            if self.all_workspaces or len(self.workspace_ids) != 1:
                return Decision.WORKSPACE_REQUIRED, None
            (only,) = self.workspace_ids
            return Decision.ALLOWED, only
        if self.all_workspaces or requested in self.workspace_ids:
            return Decision.ALLOWED, requested
        return Decision.FORBIDDEN, None


@dataclass(frozen=True)
class StreamRereads:
    """The idle re-read of many streams: the tasks that still exist, the rows of those asked
    for (by id), and the (task id, token digest) pairs refused now, with the decision their
    reconnect would get."""

    present: set[UUID]
    tasks: dict[UUID, Task]
    refused: dict[tuple[UUID, bytes], Decision]


class GatewayStore:
    """`db` is the primary; `reads` (default: the primary) answers the reads, a standby
    while it keeps up (gateway.replica). A refusal the standby gives is asked again of the
    primary: a token or task made a moment ago may not have reached the standby yet."""

    def __init__(
        self, db: Database, token_use: TokenUse | None = None, reads: Reads | None = None
    ) -> None:
        self.db = db
        self.reads: Reads = reads if reads is not None else db
        # Every valid token a lookup finds is noted here; the gateway writes them periodically.
        self.token_use = token_use if token_use is not None else TokenUse(db)
        # A reconnect storm authorizes thousands of streams at once: one statement answers
        # all that arrive while the previous one runs, instead of one statement each.
        self._authorize: GroupedCalls[tuple[bytes, UUID | None], _Found] = GroupedCalls(
            partial(self._authorize_many, "authorize_task"), in_flight=2, max_batch=500
        )
        self._authorize_stream: GroupedCalls[tuple[bytes, UUID | None], _Found] = GroupedCalls(
            partial(self._authorize_many, "authorize_stream"), in_flight=2, max_batch=500
        )
        self._snapshots: GroupedCalls[tuple[UUID, int], Task | None] = GroupedCalls(
            self._snapshots_many, in_flight=2, max_batch=500
        )

    async def authorize_task(
        self, token_hash: bytes, task_id: UUID | None, *, write: bool = False
    ) -> TaskAccess[Task]:
        """May this token see (with `write`: change) this task? No task id: only the token
        is checked, and a valid one is told NOT_FOUND."""
        found = await self._authorize.call((token_hash, task_id))
        decision = self._decide(found, write)
        task = Task.from_row(found.row) if decision is Decision.ALLOWED else None
        return TaskAccess(found.caller, decision, task)

    async def authorize_stream(self, token_hash: bytes, task_id: UUID) -> TaskAccess[TaskHead]:
        """`authorize_task` for a stream's connect, which needs of the task only its status
        and version: its row is read (`snapshot`) once the stream has subscribed, so reading
        it here as well would decode it twice."""
        found = await self._authorize_stream.call((token_hash, task_id))
        decision = self._decide(found, write=False)
        if decision is not Decision.ALLOWED:
            return TaskAccess(found.caller, decision, None)
        head = TaskHead(TaskStatus(found.row["status"]), found.row["version"])
        return TaskAccess(found.caller, decision, head)

    def _decide(self, found: _Found, write: bool) -> Decision:
        caller = found.caller
        if caller is not None:
            self.token_use.note(caller.token_id)
        return decide(
            authenticated=caller is not None,
            exists=found.exists,
            may_see=found.may_see,
            read_only=caller is not None and caller.read_only,
            write=write,
        )

    async def _authorize_many(
        self, query: str, requests: list[tuple[bytes, UUID | None]]
    ) -> list[_Found]:
        found = await self._authorize_on(self.reads, query, requests)
        if self.reads is self.db:
            return found
        again = [i for i, one in enumerate(found) if _refused(requests[i][1], one)]
        if again:
            fresh = await self._authorize_on(self.db, query, [requests[i] for i in again])
            for i, one in zip(again, fresh, strict=True):
                found[i] = one
        return found

    async def _authorize_on(
        self, reads: Reads, query: str, requests: list[tuple[bytes, UUID | None]]
    ) -> list[_Found]:
        rows = await reads.fetch_all(
            QUERIES[query],
            {
                "token_hashes": [token_hash for token_hash, _ in requests],
                "task_ids": [task_id for _, task_id in requests],
            },
        )
        assert len(rows) == len(requests)  # the query answers every pair, in order
        return [
            _Found(Caller.from_row(row), bool(row["may_see"]), bool(row["task_exists"]), row)
            for row in rows
        ]

    async def snapshot(self, task_id: UUID, at_least: int) -> Task | None:
        """A stream's first event, read once it has subscribed: the task's payload columns,
        at version `at_least` or above if there is one (a standby still behind it is passed
        over for the primary: a stream never goes backwards). None: deleted meanwhile."""
        return await self._snapshots.call((task_id, at_least))

    async def _snapshots_many(self, requests: list[tuple[UUID, int]]) -> list[Task | None]:
        found = await self._tasks_on(self.reads, [task_id for task_id, _ in requests])
        if self.reads is not self.db:
            behind = [
                task_id
                for task_id, at_least in requests
                if task_id not in found or found[task_id].version < at_least
            ]
            if behind:
                found.update(await self._tasks_on(self.db, behind))
        return [found.get(task_id) for task_id, _ in requests]

    async def _tasks_on(self, reads: Reads, task_ids: list[UUID]) -> dict[UUID, Task]:
        rows = await reads.fetch_all(QUERIES["tasks_by_id"], {"task_ids": task_ids})
        return {row["id"]: Task.from_row(row) for row in rows}

    async def principal(self, token_hash: bytes) -> Principal | None:
        """The token's principal; None for a missing, expired or revoked token."""
        params = {"token_hash": token_hash}
        row = await self.reads.fetch_one(QUERIES["principal_workspaces"], params)
        if (row is None or row["token_id"] is None) and self.reads is not self.db:
            row = await self.db.fetch_one(QUERIES["principal_workspaces"], params)
        caller = Caller.from_row(row) if row is not None else None
        if row is None or caller is None:
            return None
        self.token_use.note(caller.token_id)
        return Principal(caller, frozenset(row["workspace_ids"]), bool(row["all_workspaces"]))

    async def tasks(self, task_ids: Sequence[UUID]) -> list[Task]:
        """Several tasks' payloads and workspaces in one round trip; a missing id is left
        out. From the primary: the caller just heard of their write, which a standby may not
        have replayed yet."""
        return list((await self._tasks_on(self.db, list(task_ids))).values())

    async def reread_streams(
        self,
        pairs: Iterable[tuple[UUID, bytes]],
        *,
        rows_of: Collection[UUID] = (),
        primary: bool = False,
    ) -> StreamRereads:
        """Many streams' callers' access and tasks' existence in one round trip
        (`reread_streams`), with the rows of the tasks in `rows_of` only: a busy stream's
        re-check needs no row, and decoding one (its JSON, its timestamps) is work.
        `primary`: from the primary even with a standby (an access change just announced)."""
        task_ids, digests = [], []
        for task_id, digest in pairs:
            task_ids.append(task_id)
            digests.append(digest)
        found = await (self.db if primary else self.reads).fetch_all(
            QUERIES["reread_streams"],
            {"task_ids": task_ids, "token_hashes": digests, "row_ids": list(rows_of)},
        )
        present: set[UUID] = set()
        tasks: dict[UUID, Task] = {}
        refused: dict[tuple[UUID, bytes], Decision] = {}
        for row in found:
            task_id = row["id"]
            present.add(task_id)
            if row["version"] is not None:  # one of `rows_of`
                tasks[task_id] = Task.from_row(row)
            for column, decision in _REFUSALS:
                for digest in row[column]:
                    refused[(task_id, bytes(digest))] = decision
        return StreamRereads(present, tasks, refused)


def _refused(task_id: UUID | None, found: _Found) -> bool:
    """Not the answer a caller allowed to see the task gets (a token check: a valid token)."""
    if found.caller is None:
        return True
    return task_id is not None and (not found.exists or not found.may_see)


_REFUSALS = (
    ("refused_unauthenticated", Decision.UNAUTHENTICATED),
    ("refused_forbidden", Decision.FORBIDDEN),
)
