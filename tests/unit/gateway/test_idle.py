"""The idle sweeper against a store that fails: a re-check that did not happen is not counted
as done (an outage must not buy a revoked caller another whole interval)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from uuid import UUID

import pytest

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.idle import IdleSweeper
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import StreamRereads
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.errors import StoreUnavailable
from tests.unit.gateway.test_progress_stream import Running, new_stream, update

IDLE_S = 10.0


class FlakyStore:
    """Fails its first re-read (PostgreSQL down), then refuses every caller (token revoked)."""

    def __init__(self) -> None:
        self.calls = 0

    async def reread_streams(self, pairs: Iterable[tuple[UUID, bytes]]) -> StreamRereads:
        self.calls += 1
        pairs = list(pairs)
        if self.calls == 1:
            raise StoreUnavailable("PostgreSQL unavailable: connection refused")
        return StreamRereads({}, {pair: Decision.UNAUTHENTICATED for pair in pairs})


async def test_a_failed_re_check_is_retried_on_the_next_tick(
    start: Callable[..., Running],
) -> None:
    stream: ProgressStream = new_stream()
    running = start(update(1), stream)
    await running.settle()
    streams: weakref.WeakSet[ProgressStream] = weakref.WeakSet([stream])
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
