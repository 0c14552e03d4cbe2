"""The task as every layer sees it: a frozen `Task`, built from a `background_tasks` row here
and nowhere else, so column names are checked by mypy instead of by dict lookups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from praxiom_progress.taskstate.status import TERMINAL_STATUSES, TaskStatus


@dataclass(frozen=True, slots=True)
class Task:
    """One task's state. The first twelve fields are the payload's; the rest are the row's own,
    None when the statement did not return them (report_progress returns the payload only)."""

    id: UUID
    status: TaskStatus
    task_type: str
    progress_pct: int
    phase: str
    message: str
    started_at: datetime | None
    completed_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    result_data: Mapping[str, Any]
    version: int
    workspace_id: UUID | None = None
    params: Mapping[str, Any] | None = None
    runner_id: str | None = None
    claim_token: UUID | None = None
    timeout_s: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    spawned_by: str | None = None  # the spawning user's id, or "service:<name>"
    attempt: int | None = None  # 0 until claimed; each claim counts one
    max_attempts: int | None = None
    run_after: datetime | None = None  # a retry waits until then

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """The task in `row` (a whole row, or a statement's narrower RETURNING list); columns
        that are not the task's own (a join's, a flag's) are ignored."""
        values = {name: row[name] for name in _REQUIRED}  # KeyError names a missing one
        values.update((name, row[name]) for name in _OPTIONAL if name in row)
        values["status"] = TaskStatus(values["status"])
        return cls(**values)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def run_time_ms(self) -> float | None:
        """From claim to end (the log line of a task's end); None while it has not ended."""
        if self.started_at is None or self.completed_at is None:
            return None
        return round((self.completed_at - self.started_at).total_seconds() * 1000, 1)


_REQUIRED: tuple[str, ...] = tuple(f.name for f in fields(Task) if f.default is MISSING)
_OPTIONAL: tuple[str, ...] = tuple(f.name for f in fields(Task) if f.default is not MISSING)
