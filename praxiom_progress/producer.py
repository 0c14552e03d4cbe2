"""Spawn and cancel tasks from an application's own code, inside its own transaction.

`spawn` writes the task with the application's connection, so it exists only if the
application's transaction commits: an order and the task it causes are saved together or not
at all. The insert's NOTIFY, which PostgreSQL delivers at that commit and never on a
rollback, wakes a runner at once. Nothing is published to Redis from here: the NOTIFY names
the task, which is all the processes need, so an application needs no Redis access at all.

The checks are the gateway's own (taskstate/spawning.py, taskstate/store.py): the same
catalogue, the same JSON Schema, the same field errors. A refusal is raised before anything
is written, so it never aborts the caller's transaction.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast
from uuid import UUID

import aiopg
import psycopg2.extensions
from psycopg2.extras import RealDictCursor

from praxiom_client.payload import TaskPayload
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.spawning import CatalogueView, SpawnRejected
from praxiom_progress.taskstate.store import (
    QUERIES,
    Statement,
    cancel_statement,
    get_statement,
    insert_statement,
    inserted,
    not_cancelled,
    task_from_row,
)

#: A spawn refused for its arguments (not its params) says this.
INVALID_ARGUMENTS = "The spawn's arguments are not valid"
# A spawn does not consult `served` (a runner may be on its way), so no stale window is needed.
_CATALOGUE: Statement = (QUERIES["task_types"], {"stale_after_s": 0})


def _spawn_spec(
    rows: Sequence[Mapping[str, Any]],
    task_type: Any,
    workspace_id: Any,
    params: Any,
    spawned_by: Any,
) -> Statement:
    """The insert for a spawn the catalogue in `rows` accepts; `SpawnRejected` otherwise."""
    if spawned_by is not None and not isinstance(spawned_by, str):
        raise TypeError(f"spawned_by must be a str or None, not {type(spawned_by).__name__}")
    if workspace_id is None:
        raise SpawnRejected(
            INVALID_ARGUMENTS, {"workspace_id": ["Missing data for required field."]}
        )
    spawn = {"task_type": task_type, "workspace_id": workspace_id}
    if params is not None:
        spawn["params"] = params
    spec = CatalogueView.from_rows(rows, time.monotonic()).check_spawn(spawn, INVALID_ARGUMENTS)
    return insert_statement(
        workspace_id=spec["workspace_id"],
        task_type=spec["task_type"],
        params=spec["params"],
        spawned_by=spawned_by,
    )


def _task_id(task_id: Any) -> UUID:
    if isinstance(task_id, UUID):
        return task_id
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a UUID or a str, not {type(task_id).__name__}")
    try:
        return UUID(task_id)
    except ValueError:
        raise ValueError(f"not a task id: {task_id!r}") from None


def _dicts(rows: Sequence[Any], description: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Rows as dicts, whatever the caller's cursor factory (tuples, dicts, named tuples)."""
    if description is None:
        return []
    names = [column[0] for column in description]
    return [
        dict(row) if isinstance(row, Mapping) else dict(zip(names, row, strict=True))
        for row in rows
    ]


def _payload(task: Task) -> TaskPayload:
    return cast(TaskPayload, task_payload(task))


# -- asyncio: aiopg ---------------------------------------------------------------------------


@asynccontextmanager
async def _async_cursor(conn: aiopg.Connection | aiopg.Cursor) -> AsyncIterator[Any]:
    """The caller's cursor, or a new one on the caller's connection (same session, so the
    same transaction)."""
    if isinstance(conn, aiopg.Cursor):
        yield conn
    elif isinstance(conn, aiopg.Connection):
        async with conn.cursor(cursor_factory=RealDictCursor) as cur:
            yield cur
    elif isinstance(conn, psycopg2.extensions.connection | psycopg2.extensions.cursor):
        raise TypeError("a psycopg2 connection or cursor: use spawn_sync / cancel_sync")
    else:
        raise TypeError(f"an aiopg connection or cursor is needed, not {type(conn).__name__}")


async def _fetch(cur: Any, statement: Statement) -> list[dict[str, Any]]:
    await cur.execute(*statement)
    if cur.description is None:
        return []
    return _dicts(await cur.fetchall(), cur.description)


async def spawn(
    conn: aiopg.Connection | aiopg.Cursor,
    task_type: str,
    *,
    workspace_id: UUID | str,
    params: Mapping[str, Any] | None = None,
    spawned_by: str | None = None,
) -> TaskPayload:
    """A new pending task, inserted in `conn`'s current transaction: visible and claimed only
    once that transaction commits, and started at once then. The new task's payload (`id`).

    `SpawnRejected` (a `ValueError` with `.fields`, the HTTP spawn's 422 field errors) for a
    type the catalogue lacks or params its schema refuses; `NotFound` for a missing workspace.
    Neither aborts the transaction."""
    async with _async_cursor(conn) as cur:
        statement = _spawn_spec(
            await _fetch(cur, _CATALOGUE), task_type, workspace_id, params, spawned_by
        )
        rows = await _fetch(cur, statement)
    return _payload(inserted(rows[0] if rows else None, workspace_id))


async def cancel(conn: aiopg.Connection | aiopg.Cursor, task_id: UUID | str) -> TaskPayload:
    """Cancel a pending or running task in `conn`'s current transaction; once it commits, its
    runner stops the handler and its streams get the cancelled event. The cancelled payload.

    `TaskAlreadyFinished` (its `.payload` is the task's end) or `NotFound`, as the HTTP
    cancel's 409 and 404; neither aborts the transaction."""
    task_id = _task_id(task_id)
    async with _async_cursor(conn) as cur:
        rows = await _fetch(cur, cancel_statement(task_id))
        if not rows:
            current = await _fetch(cur, get_statement(task_id))
            raise not_cancelled(task_id, current[0] if current else None)
    return _payload(task_from_row(rows[0]))


# -- threads: psycopg2 ------------------------------------------------------------------------


@contextmanager
def _sync_cursor(conn: Any) -> Iterator[Any]:
    if isinstance(conn, psycopg2.extensions.cursor):
        yield conn
    elif isinstance(conn, psycopg2.extensions.connection):
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            yield cur
    elif isinstance(conn, aiopg.Connection | aiopg.Cursor):
        raise TypeError("an aiopg connection or cursor: use `await spawn` / `await cancel`")
    else:
        raise TypeError(f"a psycopg2 connection or cursor is needed, not {type(conn).__name__}")


def _fetch_sync(cur: Any, statement: Statement) -> list[dict[str, Any]]:
    cur.execute(*statement)
    if cur.description is None:
        return []
    return _dicts(cur.fetchall(), cur.description)


def spawn_sync(
    conn: psycopg2.extensions.connection | psycopg2.extensions.cursor,
    task_type: str,
    *,
    workspace_id: UUID | str,
    params: Mapping[str, Any] | None = None,
    spawned_by: str | None = None,
) -> TaskPayload:
    """`spawn` for a psycopg2 connection (or cursor): the task is part of the connection's
    current transaction, and exists once the caller commits it."""
    with _sync_cursor(conn) as cur:
        statement = _spawn_spec(
            _fetch_sync(cur, _CATALOGUE), task_type, workspace_id, params, spawned_by
        )
        rows = _fetch_sync(cur, statement)
    return _payload(inserted(rows[0] if rows else None, workspace_id))


def cancel_sync(
    conn: psycopg2.extensions.connection | psycopg2.extensions.cursor, task_id: UUID | str
) -> TaskPayload:
    """`cancel` for a psycopg2 connection (or cursor), in its current transaction."""
    task_id = _task_id(task_id)
    with _sync_cursor(conn) as cur:
        rows = _fetch_sync(cur, cancel_statement(task_id))
        if not rows:
            current = _fetch_sync(cur, get_statement(task_id))
            raise not_cancelled(task_id, current[0] if current else None)
    return _payload(task_from_row(rows[0]))
