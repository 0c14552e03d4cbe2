"""At most one progress write per task per RUNNER_PROGRESS_MIN_INTERVAL, however often its
handler reports: a handler that reports once per row of a million-row export must not cost a
million UPDATEs.

Every report is a full state, so only the newest one of a task needs writing. A report is
written at once (its caller waits for the write, and learns whether the task is still held)
when the task's last write is at least an interval old or the report starts a new phase (so
each phase reaches the stream). Any other report is kept as the task's newest state and its
caller returns after one pass of the loop; a later report supersedes it, or it is written when
the interval is up. `finish` writes the kept one before the task's end, so the final state is
exact and in order. A kept report's write that finds the task no longer held marks it lost:
the task's next report learns it (TaskLost). The writes go through the group commit
(`runner.batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from uuid import UUID

from praxiom_progress.runner.backoff import Backoff
from praxiom_progress.runner.batch import ProgressBatcher, Report
from praxiom_progress.taskstate.models import Task

log = logging.getLogger("runner")


@dataclass
class ThrottleStats:
    """Reports accepted against rows written (the `make bench` throttling figure)."""

    accepted: int = 0
    written: int = 0


@dataclass(eq=False)
class _Lane:
    """One task's progress between its claim and its end."""

    phase: str | None = None  # of the last report sent to be written
    sent_at: float = float("-inf")  # loop time it was sent
    kept: Report | None = None  # the newest report not yet sent
    flusher: asyncio.Task[None] | None = None  # writes `kept` when the interval is up
    hurry: asyncio.Event = field(default_factory=asyncio.Event)  # the end: write it now
    lost: bool = False  # a write matched nothing: the task is no longer held
    sends: int = 0  # reports sent so far; a retried write of an older one is dropped


class ProgressThrottle:
    def __init__(self, batcher: ProgressBatcher, min_interval_s: float) -> None:
        self._batcher = batcher
        self._interval_s = min_interval_s
        self._lanes: dict[UUID, _Lane] = {}
        self.stats = ThrottleStats()

    def start(self, task_id: UUID, phase: str) -> None:
        """A task was claimed in `phase`: a report in another phase is written at once."""
        self._lanes[task_id] = _Lane(phase=phase)

    async def submit(self, report: Report) -> bool:
        """Write `report` now, or keep it as its task's newest state; False once the task is
        known to be no longer held. Raises what a write it waited for raised."""
        lane = self._lanes.setdefault(report.task_id, _Lane())
        if lane.lost:
            return False
        self.stats.accepted += 1
        now = asyncio.get_running_loop().time()
        if report.phase != lane.phase or (
            lane.flusher is None and now - lane.sent_at >= self._interval_s
        ):
            lane.kept = None  # its phase was sent already: this newer state supersedes it
            return await self._send(lane, report)
        lane.kept = report
        if lane.flusher is None:
            lane.flusher = asyncio.create_task(
                self._flush_when_due(lane), name=f"progress-{report.task_id}"
            )
        # Yield once: a handler whose only await is report_progress must still let the loop
        # run (the kept report's write, heartbeats, other tasks).
        await asyncio.sleep(0)
        return True

    async def finish(self, task_id: UUID) -> bool:
        """Write the task's kept report, if any, now; False when the task is no longer held.
        Call before writing the task's end."""
        lane = self._lanes.pop(task_id, None)
        if lane is None:
            return True
        lane.hurry.set()
        if lane.flusher is not None:
            await lane.flusher
        return not lane.lost

    def drop(self, task_id: UUID) -> None:
        """Forget the task (withdrawn, handed back, or ended): its kept report is not written."""
        lane = self._lanes.pop(task_id, None)
        if lane is not None:
            lane.kept = None
            if lane.flusher is not None:
                lane.flusher.cancel()

    async def _send(self, lane: _Lane, report: Report) -> bool:
        lane.phase = report.phase
        lane.sent_at = asyncio.get_running_loop().time()
        lane.sends += 1
        mine = lane.sends

        async def write() -> Task | bool | None:
            if lane.sends != mine:  # retried after a newer report went: that one has the state
                return True
            return await self._batcher.submit(report)

        written = await Backoff().retry("report_progress", write)
        if written is True:
            return True  # superseded while PostgreSQL was away: never written out of order
        if written is None:
            lane.lost = True
            return False
        self.stats.written += 1
        return True

    async def _flush_when_due(self, lane: _Lane) -> None:
        try:
            while lane.kept is not None and not lane.lost:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(lane.sent_at + self._interval_s):
                        await lane.hurry.wait()
                report, lane.kept = lane.kept, None
                if report is not None:
                    await self._send(lane, report)
        except Exception:
            # A bug, not PostgreSQL being away (retried): the task's end is still written.
            log.exception(
                "a kept progress report could not be written",
                extra={"action": "report_error"},
            )
        finally:
            lane.flusher = None
