"""Task-row queries that more than one process runs, one method per named query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Database, jsonb
from praxiom_progress.taskstate.errors import InvalidTransition, NotFound
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.sql import load_queries

QUERIES = load_queries("praxiom_progress.taskstate")

CANCELLED_MESSAGE = "Task cancelled"


#: A named query and its arguments, for whichever connection runs it.
Statement = tuple[str, dict[str, Any]]
#: Columns a connection without psycopg2's UUID typecaster returns as text.
_UUID_COLUMNS = ("id", "workspace_id", "claim_token")


def insert_statement(
    *,
    workspace_id: UUID | str,
    task_type: str,
    params: Mapping[str, Any],
    spawned_by: str | None = None,
) -> Statement:
    """The insert of a new pending task, whose NOTIFY wakes the runners at commit. Ids go as
    text: an application's own psycopg2 connection may have no UUID adapter."""
    return QUERIES["insert_task"], {
        "workspace_id": str(workspace_id),
        "task_type": task_type,
        "params": jsonb(dict(params)),
        "spawned_by": spawned_by,
        "notify_channel": TASK_PENDING_NOTIFY,
    }


def cancel_statement(task_id: UUID | str, message: str = CANCELLED_MESSAGE) -> Statement:
    """The cancel of a pending or running task, whose NOTIFY tells the runners at commit."""
    return QUERIES["cancel_task"], {
        "task_id": str(task_id),
        "message": message,
        "notify_channel": TASK_CANCELLED_NOTIFY,
    }


def get_statement(task_id: UUID | str) -> Statement:
    return QUERIES["get_task"], {"task_id": str(task_id)}


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The task in a row from any connection (ids made `UUID`s if they came back as text)."""
    fixed = {name: UUID(row[name]) for name in _UUID_COLUMNS if isinstance(row.get(name), str)}
    return Task.from_row({**row, **fixed} if fixed else row)


def inserted(row: Mapping[str, Any] | None, workspace_id: UUID | str) -> Task:
    """The task `insert_statement` returned; `NotFound` when the workspace does not exist."""
    if row is None:
        raise NotFound(f"no workspace {workspace_id}")
    return task_from_row(row)


def not_cancelled(task_id: UUID | str, current: Mapping[str, Any] | None) -> Exception:
    """Why `cancel_statement` changed nothing, from the task's row read afterwards."""
    if current is None:
        return NotFound(f"no task {task_id}")
    return TaskAlreadyFinished(task_from_row(current))


class TaskStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_task(self, task_id: UUID) -> Task | None:
        row = await self.db.fetch_one(*get_statement(task_id))
        return task_from_row(row) if row is not None else None

    async def insert_task(
        self,
        *,
        workspace_id: UUID,
        task_type: str,
        params: Mapping[str, Any],
        spawned_by: str | None = None,
    ) -> Task:
        """A new pending task; `NotFound` when the workspace does not exist. `spawned_by` is
        the caller's key (a user's id, or "service:<name>")."""
        statement = insert_statement(
            workspace_id=workspace_id, task_type=task_type, params=params, spawned_by=spawned_by
        )
        return inserted(await self.db.fetch_one(*statement), workspace_id)

    async def cancel_task(self, task_id: UUID, message: str = CANCELLED_MESSAGE) -> Task:
        """Cancel a pending or running task; `TaskAlreadyFinished` carries a finished task."""
        row = await self.db.fetch_one(*cancel_statement(task_id, message))
        if row is not None:
            return task_from_row(row)
        raise not_cancelled(task_id, await self.db.fetch_one(*get_statement(task_id)))


class TaskAlreadyFinished(InvalidTransition):
    """The task already ended; `task` is its current state, `payload` its payload."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is already {task.status}")
        self.task = task

    @property
    def payload(self) -> dict[str, Any]:
        return task_payload(self.task)
