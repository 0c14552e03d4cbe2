"""The idle re-emit: every stream quiet for SSE_IDLE_TIMEOUT gets its task's row again.

One sweeper per gateway process does it for all streams, reading every due row
in one query per tick, instead of a timer and a query per stream: ten thousand
idle streams cost a thousand row reads a second either way, but here they are a
few statements a second rather than a thousand, and an idle stream holds no
timer. The re-read state goes to the stream like any update (`reemit`), so a
state newer than the stream has sent wins, and a terminal one ends it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from uuid import UUID

from praxiom_progress.gateway.access import note_access_lost
from praxiom_progress.gateway.frames import Update, snapshot
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.errors import StoreUnavailable

log = logging.getLogger("gateway.idle")

#: Rows per query of the access re-check (every stream at once, each held until checked).
BATCH = 1000
#: Streams per query of a sweep, handled in one go on the loop (about 50 us each: a few ms).
CHUNK = 50
#: A sweep's chunks are spread over this share of its tick.
SPREAD = 0.8
#: A sweep takes at least this many due streams, however few streams are open.
MIN_PER_SWEEP = 100
#: Streams a sweep looks at in one turn of the loop as it picks the due ones (about 0.5 ms:
#: 10,000 streams at once held the loop 2 to 5 ms every tick).
SCAN = 2500


class IdleSweeper:
    def __init__(
        self,
        streams: set[ProgressStream],
        store: GatewayStore,
        stats: StreamStats,
        limit_stats: LimitStats,
        *,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        recheck_more: Callable[[], Coroutine[Any, Any, int]] | None = None,
    ) -> None:
        self._streams = streams
        self._store = store  # its re-read also re-checks each stream's caller (security)
        self._stats = stats
        self._limit_stats = limit_stats
        self._idle_timeout_s = idle_timeout_s
        # A due stream is found within a tenth of the timeout (at most a second) of it.
        self.tick_s = min(1.0, idle_timeout_s / 10)
        self.clock = clock  # the streams' clock (time.monotonic); a test may move it on
        # The workspace streams' re-check (gateway.workspace_sse): calling it holds them, awaiting
        # it checks them. They re-read by themselves, so the sweep leaves them alone.
        self._recheck_more = recheck_more

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.sweep()
            except StoreUnavailable:
                pass  # the streams are due again next time round; PostgreSQL may be back

    async def sweep(self) -> int:
        """Re-emit every quiet stream's row, and re-check the caller of every stream whose
        last check is a timeout old (a busy stream too); how many streams got a re-emit."""
        now = self.clock()
        cutoff = now - self._idle_timeout_s
        due = await self._due(cutoff)
        # And each sweep's share goes in chunks spread over the tick: a chunk's rows are
        # handled in one go, a few milliseconds, so no sweep holds the loop for long.
        chunks = list(_batches(due, CHUNK))
        pause_s = SPREAD * self.tick_s / len(chunks) if len(chunks) > 1 else 0.0
        sent = 0
        for index, chunk in enumerate(chunks):
            if index:
                await asyncio.sleep(pause_s)
            # A chunk whose query fails (PostgreSQL down) stays due, and so do those after it:
            # their callers are checked on the next tick that reaches the database.
            sent += await self._check(chunk, now, cutoff)
        self._stats.idle_reemits += sent
        return sent

    async def _due(self, cutoff: float) -> list[ProgressStream]:
        """The streams due (quiet, or their caller unchecked, since `cutoff`), looked at SCAN
        to a turn of the loop. Streams opened together fall due together: of a crowd, the
        most overdue, at most twice the steady rate (every stream once per timeout), so the
        crowd spreads over sweeps."""
        streams = list(self._streams)
        due: list[ProgressStream] = []
        for start in range(0, len(streams), SCAN):
            if start:
                await asyncio.sleep(0)
            due += [s for s in streams[start : start + SCAN] if s.overdue_since <= cutoff]
        budget = max(
            MIN_PER_SWEEP, 2 * math.ceil(len(streams) * self.tick_s / self._idle_timeout_s)
        )
        if len(due) > budget:
            await asyncio.sleep(0)  # the pick in a turn of its own (~2 ms at 5,000 due)
            due = heapq.nsmallest(budget, due, key=_overdue_since)
        return due

    async def _check(self, streams: list[ProgressStream], now: float, cutoff: float) -> int:
        """One chunk: its callers, and the rows of its quiet streams' tasks, in one query; how
        many streams got a re-emit. (A stream quiet before the query and busy after it gets no
        re-emit; one busy before it cannot be quiet after.)"""
        quiet_ids = {s.task_id for s in streams if s.quiet_since(cutoff)}
        reread = await self._store.reread_streams(
            ((s.task_id, s.digest) for s in streams), rows_of=quiet_ids
        )
        tasks = reread.tasks
        updates: dict[UUID, Update] = {}
        sent = 0
        for stream in streams:
            quiet = stream.note_checked(now, cutoff)
            task_id = stream.task_id
            lost = reread.refused.get((task_id, stream.digest))
            if lost is not None:  # token expired or revoked, or access removed: 401/403
                note_access_lost(self._limit_stats, task_id, lost)
                stream.close()
                continue
            if task_id not in reread.present:
                stream.close()  # deleted under us: nothing more will come
                continue
            task = tasks.get(task_id)
            if not quiet or task is None:
                continue  # busy: its caller is checked, its updates flow anyway
            if task_id not in updates:
                updates[task_id] = snapshot(task)  # encoded once per task, not per stream
            if stream.reemit(updates[task_id], now):
                self._stats.events += 1  # written at once (else the stream's task sends it)
            sent += 1
        return sent

    async def recheck_all(self) -> int:
        """Access was taken away somewhere: re-check every open stream's caller now, each
        stream sending nothing until its own check has answered; how many were closed.
        Raises StoreUnavailable with the streams still held (the caller tries again)."""
        more = self._recheck_more() if self._recheck_more is not None else None
        streams = list(self._streams)
        for stream in streams:
            stream.hold()
        try:
            closed = await self._recheck_held(streams)
            return closed + (await more if more is not None else 0)
        finally:
            if more is not None:
                more.close()  # not awaited when the first part failed: no warning

    async def _recheck_held(self, streams: list[ProgressStream]) -> int:
        closed = 0
        for batch in _batches(streams, BATCH):
            pairs = ((s.task_id, s.digest) for s in batch)
            # From the primary: a standby may not have replayed the change just announced.
            reread = await self._store.reread_streams(pairs, primary=True)
            for stream in batch:
                lost = reread.refused.get((stream.task_id, stream.digest))
                if lost is not None:
                    note_access_lost(self._limit_stats, stream.task_id, lost)
                if lost is not None or stream.task_id not in reread.present:
                    stream.close()
                    closed += 1
                else:
                    stream.release()
        return closed


def _overdue_since(stream: ProgressStream) -> float:
    return stream.overdue_since


def _batches(items: list[ProgressStream], size: int) -> Iterable[list[ProgressStream]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
