"""Group commit for report_progress: one UPDATE and one Redis round trip for every report
that arrived while the previous write was in flight.

A lone report goes out at once (no added latency); under load, reports queue
behind the write in flight and leave together, so the cost per report falls
as the load rises. Each caller returns once its own task is committed, and
learns whether its task was still held, exactly as with a write of its own.
Its publish is queued then (`TaskWriter.publish_soon`: in order, after every
publish made before it) and goes out while the next batch is written, rather
than each batch waiting for Redis before the handlers may report again. The
batcher, not the caller, publishes, so a committed write is published even
when the handler that made it is cancelled.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.batching import GroupedCalls
from praxiom_progress.taskstate.models import Task

#: Reports per statement at most: keeps one statement's locks and payload small.
MAX_BATCH = 200
#: Statements in flight at once (RUNNER_PROGRESS_STATEMENTS): while one waits on PostgreSQL,
#: the next batch fills and goes.
MAX_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Report:
    task_id: UUID
    claim_token: UUID
    phase: str
    progress_pct: int
    message: str


WriteMany = Callable[[Sequence[Report]], Awaitable[list[Task]]]


class ProgressBatcher:
    def __init__(
        self,
        write_many: WriteMany,
        writer: TaskWriter,
        *,
        in_flight: int = MAX_IN_FLIGHT,
        on_write: Callable[[float], None] | None = None,
        publish_within_s: float = math.inf,
    ) -> None:
        """`on_write` is told how long each statement took, success or not (the metrics'
        report_progress latency; must not block). A batch's publish is not sent at all when
        the loop gets to it later than `publish_within_s` after its write."""
        self._write_many = write_many
        self._writer = writer
        self._publish_within_s = publish_within_s
        self._on_write = on_write
        # A task's reports are written one after another, in the order it made them.
        self._calls: GroupedCalls[Report, Task | None] = GroupedCalls(
            self._write_and_publish,
            in_flight=in_flight,
            max_batch=MAX_BATCH,
            key=lambda report: report.task_id,
        )

    async def submit(self, report: Report) -> Task | None:
        """Write and publish one report; the task written, or None when it is no longer held.
        Raises what the write raised (StoreUnavailable: the caller retries)."""
        return await self._calls.call(report)

    async def _write_and_publish(self, reports: list[Report]) -> list[Task | None]:
        tasks = await self._timed_write(reports)
        # Queued one step later: the callers (woken after this returns) report again and the
        # next batch is sent to PostgreSQL first, so the publish's own CPU (encoding, packing)
        # runs while PostgreSQL writes that batch, not before it; still queued before any
        # caller resumes, so nothing a handler writes next is published ahead of it. A handler
        # that then blocks the loop holds the publish back: past `publish_within_s` it is not
        # sent (TaskWriter.publish_soon), as the task may have been reaped meanwhile.
        asyncio.get_running_loop().call_soon(self._publish, tasks)
        written = {task.id: task for task in tasks}
        return [written.get(report.task_id) for report in reports]

    def _publish(self, tasks: list[Task]) -> None:
        self._writer.publish_soon(tasks, within_s=self._publish_within_s)

    async def _timed_write(self, reports: list[Report]) -> list[Task]:
        if self._on_write is None:
            return await self._write_many(reports)
        started = time.perf_counter()
        try:
            return await self._write_many(reports)
        finally:
            self._on_write(time.perf_counter() - started)
