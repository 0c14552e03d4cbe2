"""The task payload as a client receives it: every SSE event, every `/status` answer, and the
bodies of spawn, cancel and the canonical record built on it."""

from __future__ import annotations

from typing import Any, TypedDict


class TaskPayload(TypedDict):
    """The spec's eleven fields plus `version`, in the gateway's JSON (times as ISO 8601)."""

    id: str
    status: str  # pending, running, completed, failed, cancelled
    task_type: str
    progress_pct: int
    phase: str
    message: str
    started_at: str | None
    completed_at: str | None
    heartbeat_at: str | None
    error: str | None
    result_data: dict[str, Any]
    version: int


class SpawnedTask(TaskPayload):
    """Spawn's answer: the new task's payload, its id once more as `task_id`."""

    task_id: str


class TaskRecord(TaskPayload):
    """`GET /api/tasks/{id}`: the payload plus what only the record holds."""

    workspace_id: str
    params: dict[str, Any]
    created_at: str
    updated_at: str
    attempt: int  # 0 until claimed; each claim counts one
    max_attempts: int


class TaskPage(TypedDict):
    """`GET /api/tasks`: a page of records, newest first, and the cursor of the next page."""

    tasks: list[TaskRecord]
    next_cursor: str | None
