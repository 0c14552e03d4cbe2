"""Task-row queries that more than one process runs, one method per named query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Database, jsonb
from praxiom_progress.taskstate.errors import InvalidTransition, NotFound
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.sql import load_queries

QUERIES = load_queries("praxiom_progress.taskstate")

CANCELLED_MESSAGE = "Task cancelled"


class TaskStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_task(self, task_id: UUID) -> Task | None:
        row = await self.db.fetch_one(QUERIES["get_task"], {"task_id": task_id})
        return Task.from_row(row) if row is not None else None

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
        row = await self.db.fetch_one(
            QUERIES["insert_task"],
            {
                "workspace_id": workspace_id,
                "task_type": task_type,
                "params": jsonb(dict(params)),
                "spawned_by": spawned_by,
                "notify_channel": TASK_PENDING_NOTIFY,
            },
        )
        assert row is not None  # an INSERT … RETURNING always returns its row
        return Task.from_row(row)

    async def cancel_task(self, task_id: UUID, message: str = CANCELLED_MESSAGE) -> Task:
        """Cancel a pending or running task; `TaskAlreadyFinished` carries a finished task."""
        row = await self.db.fetch_one(
            QUERIES["cancel_task"],
            {"task_id": task_id, "message": message, "notify_channel": TASK_CANCELLED_NOTIFY},
        )
        if row is not None:
            return Task.from_row(row)
        current = await self.get_task(task_id)
        if current is None:
            raise NotFound(f"no task {task_id}")
        raise TaskAlreadyFinished(current)


class TaskAlreadyFinished(InvalidTransition):
    """The task already ended; `task` is its current state."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is already {task.status}")
        self.task = task
