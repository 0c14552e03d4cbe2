"""Group commit for report_progress: one UPDATE and one Redis round trip for every report
that arrived while the previous write was in flight.

A lone report goes out at once (no added latency); under load, reports queue
behind the write in flight and leave together, so the cost per report falls
as the load rises. Each caller still returns only after its own row is
committed and published, and learns whether its task was still held, exactly
as with a write of its own. The batcher, not the caller, publishes, so a
committed write is published even when the handler that made it is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from taskstate.db import Row

#: Reports per statement at most: keeps one statement's locks and payload small.
MAX_BATCH = 200
#: Statements in flight at once: while one waits on PostgreSQL, the next batch fills and goes.
MAX_IN_FLIGHT = 2


@dataclass(frozen=True, slots=True)
class Report:
    task_id: UUID
    claim_token: UUID
    phase: str
    progress_pct: int
    message: str


WriteMany = Callable[[Sequence[Report]], Awaitable[list[Row]]]
PublishMany = Callable[[Sequence[Row]], Awaitable[object]]


@dataclass
class BatchStats:
    reports: int = 0
    statements: int = 0

    @property
    def mean_batch(self) -> float:
        return self.reports / self.statements if self.statements else 0.0


class ProgressBatcher:
    def __init__(
        self, write_many: WriteMany, publish_many: PublishMany, *, in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self._write_many = write_many
        self._publish_many = publish_many
        self._in_flight = in_flight
        self._pending: list[tuple[Report, asyncio.Future[Row | None]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._writing: set[UUID] = set()  # tasks with a report in a statement now
        self.stats = BatchStats()

    async def submit(self, report: Report) -> Row | None:
        """Write and publish one report; the row, or None when the task is no longer held.
        Raises what the write raised (StoreUnavailable: the caller retries)."""
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._pending.append((report, future))
        if len(self._flushers) < self._in_flight:
            flusher = asyncio.create_task(self._flush(), name="progress-batcher")
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        while batch := self._take_batch():
            task_ids = {report.task_id for report, _ in batch}
            self._writing |= task_ids
            try:
                rows = await self._write_many([report for report, _ in batch])
            except Exception as exc:  # every caller of this batch sees the write's failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._writing -= task_ids
            self.stats.reports += len(batch)
            self.stats.statements += 1
            if rows:
                await self._publish_many(rows)  # never raises: Redis is best effort
            written = {row["id"]: row for row in rows}
            for report, future in batch:
                if not future.done():
                    future.set_result(written.get(report.task_id))
            await asyncio.sleep(0)  # let those callers report again, into the next batch

    def _take_batch(self) -> list[tuple[Report, asyncio.Future[Row | None]]]:
        """The oldest reports, one per task and none of a task already being written, so a
        task's reports are written in the order they were made."""
        batch: list[tuple[Report, asyncio.Future[Row | None]]] = []
        rest: list[tuple[Report, asyncio.Future[Row | None]]] = []
        seen = set(self._writing)
        for item in self._pending:
            report, future = item
            if future.done():
                continue  # its caller was cancelled before the write began
            if report.task_id in seen or len(batch) >= MAX_BATCH:
                rest.append(item)
            else:
                seen.add(report.task_id)
                batch.append(item)
        self._pending = rest
        return batch
