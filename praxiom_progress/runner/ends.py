"""Group commit for task ends: one UPDATE for every completion and failure recorded while the
previous one was in flight (`runner.batch` does the same for report_progress).

A lone end goes out at once; when many tasks end together (short tasks under a backlog), their
ends leave in one statement instead of one each. Each caller still learns whether its own task
was written (None: no longer held, or our write's answer was lost and the retried one matched
nothing), and a failed statement fails every caller of it, who retries as before: every end is
guarded by the claim token, so a retried end can never be written twice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from praxiom_progress.taskstate.batching import GroupedCalls
from praxiom_progress.taskstate.models import Task

#: Ends per statement at most: keeps one statement's locks and payload small.
MAX_BATCH = 200
#: Statements in flight at once: while one waits on PostgreSQL, the next batch fills.
MAX_IN_FLIGHT = 1


@dataclass(frozen=True, slots=True)
class End:
    """A task's end: completed with `message` and `result_data`, or failed with `error`."""

    task_id: UUID
    claim_token: UUID
    completed: bool
    message: str | None = None
    result_data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def result_json(self) -> str | None:
        """The result as the statement takes it (JSON text); None for a failure."""
        return json.dumps(dict(self.result_data), allow_nan=False) if self.completed else None


WriteEnds = Callable[[Sequence[End]], Awaitable[list[Task]]]


class EndBatcher:
    def __init__(
        self, write_many: WriteEnds, *, in_flight: int = MAX_IN_FLIGHT, max_batch: int = MAX_BATCH
    ) -> None:
        self._write_many = write_many
        # One task's ends never share a statement (a retried end goes after the first).
        self._calls: GroupedCalls[End, Task | None] = GroupedCalls(
            self._write, in_flight=in_flight, max_batch=max_batch, key=lambda end: end.task_id
        )

    async def complete(
        self, *, task_id: UUID, claim_token: UUID, message: str, result_data: Mapping[str, Any]
    ) -> Task | None:
        """Record the task completed; the task written, or None when it is no longer held."""
        return await self._calls.call(End(task_id, claim_token, True, message, result_data))

    async def fail(self, *, task_id: UUID, claim_token: UUID, error: str) -> Task | None:
        """Record the task failed; the task written, or None when it is no longer held."""
        return await self._calls.call(End(task_id, claim_token, False, error=error))

    async def _write(self, ends: list[End]) -> list[Task | None]:
        written = {task.id: task for task in await self._write_many(ends)}
        return [written.get(end.task_id) for end in ends]
