"""The task payload as a subscriber receives it: every SSE event and every `/status` answer."""

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
