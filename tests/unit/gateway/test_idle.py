"""The idle sweeper against a store that fails: a re-check that did not happen is not counted
as done (an outage must not buy a revoked caller another whole interval)."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID, uuid4

import pytest

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.idle import CHUNK, MIN_PER_SWEEP, SCAN, SPREAD, IdleSweeper
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import StreamRereads
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.errors import StoreUnavailable
from tests.unit.gateway.test_progress_stream import Running, new_stream, task_row, update

IDLE_S = 10.0


class FlakyStore:
    """Fails its first re-read (PostgreSQL down), then refuses every caller (token revoked)."""

    def __init__(self) -> None:
        self.calls = 0

    async def reread_streams(
        self, pairs: Iterable[tuple[UUID, bytes]], *, rows_of: Iterable[UUID] = ()
    ) -> StreamRereads:
        self.calls += 1
        pairs = list(pairs)
        if self.calls == 1:
            raise StoreUnavailable("PostgreSQL unavailable: connection refused")
        present = {task_id for task_id, _ in pairs}
        return StreamRereads(present, {}, {pair: Decision.UNAUTHENTICATED for pair in pairs})


async def test_a_failed_re_check_is_retried_on_the_next_tick(
    start: Callable[..., Running],
) -> None:
    stream: ProgressStream = new_stream()
    running = start(update(1), stream)
    await running.settle()
    streams: set[ProgressStream] = {stream}
    store = FlakyStore()
    limits = LimitStats()
    later = time.monotonic() + IDLE_S + 1  # a timeout on: the stream is due
    sweeper = IdleSweeper(
        streams, store, StreamStats(), limits, idle_timeout_s=IDLE_S, clock=lambda: later
    )  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        await sweeper.sweep()
    await sweeper.sweep()  # the very next tick, PostgreSQL back
    assert store.calls == 2, "the stream was marked checked although its check failed"
    assert limits.streams_access_lost == 1
    await running.settle()
    assert running.task.done(), "a caller refused at the re-check keeps its stream"


class QuietStream:
    """What the sweeper sees of a stream that has been quiet since `since`."""

    def __init__(self, since: float) -> None:
        self.task_id = uuid4()
        self.digest = b"digest"
        self.since = since
        self.reemitted = 0

    @property
    def overdue_since(self) -> float:
        return self.since

    def quiet_since(self, cutoff: float) -> bool:
        return self.since <= cutoff

    def note_checked(self, now: float, quiet_since: float) -> bool:
        self.since = now
        return True

    def reemit(self, update: Update, now: float) -> bool:
        self.reemitted += 1
        return True

    def close(self) -> None:
        raise AssertionError("every caller may still see its task")


class TimedStore:
    """Answers every re-read with its tasks' rows; notes each query's size and time."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, float]] = []

    async def reread_streams(
        self, pairs: Iterable[tuple[UUID, bytes]], *, rows_of: Iterable[UUID] = ()
    ) -> StreamRereads:
        pairs = list(pairs)
        self.reads.append((len(pairs), time.monotonic()))
        present = {t for t, _ in pairs}
        return StreamRereads(present, {t: task_row(t, 1) for t in set(rows_of)}, {})


async def test_a_sweep_goes_in_chunks_spread_over_its_tick_most_overdue_first() -> None:
    """Streams falling due together are handled CHUNK at a time, with pauses between the
    chunks, so no one step of a sweep holds the event loop for long."""
    now = time.monotonic()
    crowd = [QuietStream(now - 100 - i) for i in range(MIN_PER_SWEEP + 30)]
    streams: set[Any] = set(crowd)
    store = TimedStore()
    sweeper = IdleSweeper(
        streams,
        store,
        StreamStats(),
        LimitStats(),
        idle_timeout_s=1.0,  # type: ignore[arg-type]
    )
    assert await sweeper.sweep() == MIN_PER_SWEEP  # a sweep's share, not the crowd
    sizes = [size for size, _ in store.reads]
    assert sizes == [CHUNK] * (MIN_PER_SWEEP // CHUNK)
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(store.reads)]
    pause = SPREAD * sweeper.tick_s / len(sizes)
    assert all(gap >= pause * 0.9 for gap in gaps), (gaps, pause)
    assert all(s.reemitted == 1 for s in crowd[-MIN_PER_SWEEP:])  # the most overdue
    assert all(s.reemitted == 0 for s in crowd[:-MIN_PER_SWEEP])


class BusyStream(QuietStream):
    """A stream whose updates flow: due for its caller's re-check, not for a re-emit."""

    def quiet_since(self, cutoff: float) -> bool:
        return False

    def note_checked(self, now: float, quiet_since: float) -> bool:
        self.since = now
        return False

    def reemit(self, update: Update, now: float) -> bool:
        raise AssertionError("a busy stream gets no re-emit")


class RowsAsked(TimedStore):
    """Notes which tasks' rows each re-read asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.rows_of: list[set[UUID]] = []

    async def reread_streams(
        self, pairs: Iterable[tuple[UUID, bytes]], *, rows_of: Iterable[UUID] = ()
    ) -> StreamRereads:
        self.rows_of.append(set(rows_of))
        return await super().reread_streams(pairs, rows_of=rows_of)


async def test_a_re_check_asks_for_the_rows_of_quiet_streams_only() -> None:
    """A busy stream's caller is re-checked in the same query as a quiet one's, but its
    task's row is neither asked for nor decoded: it gets no re-emit."""
    now = time.monotonic()
    quiet, busy = QuietStream(now - 100), BusyStream(now - 100)
    store = RowsAsked()
    sweeper = IdleSweeper(
        {quiet, busy},  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        StreamStats(),
        LimitStats(),
        idle_timeout_s=IDLE_S,
    )
    assert await sweeper.sweep() == 1
    assert store.rows_of == [{quiet.task_id}]
    assert [size for size, _ in store.reads] == [2]  # both callers, one query
    assert quiet.reemitted == 1 and busy.since > now  # the busy one's check is noted


async def test_a_sweep_picks_its_due_streams_a_slice_per_turn_of_the_loop() -> None:
    """Ten thousand streams looked at in one go held the loop for milliseconds every tick:
    the sweep looks at SCAN of them per turn, and picks the most overdue of a crowd in a turn
    of its own, so other callbacks run in between."""
    now = time.monotonic()
    crowd = [QuietStream(now - 100 - i) for i in range(2 * SCAN + 10)]
    sweeper = IdleSweeper(
        set(crowd),  # type: ignore[arg-type]
        TimedStore(),  # type: ignore[arg-type]
        StreamStats(),
        LimitStats(),
        idle_timeout_s=IDLE_S,
    )
    turns = 0

    async def another_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(another_task())
    await asyncio.sleep(0)
    before = turns
    due = await sweeper._due(now - IDLE_S)
    other.cancel()
    assert turns - before >= 3  # two more slices, then the pick
    budget = 2 * math.ceil(len(crowd) * sweeper.tick_s / IDLE_S)
    assert due == sorted(crowd, key=lambda s: s.since)[:budget]  # the most overdue, in order
