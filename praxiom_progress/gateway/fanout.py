"""Handing one decoded update to every stream of its channel, a bounded number per loop turn.

Each `deliver` costs about 10 us (a socket write), so a task with a thousand watchers held
the event loop for 10 ms per message in one pass: every other stream, open and /metrics
waited behind it. Here a message reaches at most SSE_DELIVER_CHUNK streams in one turn of
the loop; the rest (and every message that arrives meanwhile, whatever its channel) waits
in one FIFO queue drained by `loop.call_soon`, so a later message never overtakes an earlier
one for any stream. A message for fewer streams than a chunk with nothing queued (the
common case: a task with a watcher or two) is delivered at once, as before.

A stream that left its channel between two chunks gets nothing more: each queued chunk is
checked against the channel's current streams. The Redis reader waits (`drained`) until the
queue is empty before it reads the next message, so a backlog stays in Redis and the
kernel's buffers, as it did with one pass, and never piles up here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping

from praxiom_progress.gateway.dispatching import DispatcherStats
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.lag import LagHistogram
from praxiom_progress.gateway.stream import Watcher


class _Pending:
    """A message whose streams are not all handed it yet."""

    __slots__ = ("at", "channel", "streams", "update", "written")

    def __init__(self, channel: str, update: Update, streams: list[Watcher]) -> None:
        self.channel = channel
        self.update = update
        self.streams = streams  # as they were when the message arrived
        self.at = 0  # the next one to hand it to
        self.written = 0


class Fanout:
    """One dispatcher's deliveries, in arrival order (see the module)."""

    def __init__(
        self,
        watches: Mapping[str, Collection[Watcher]],
        stats: DispatcherStats,
        *,
        chunk: int,
        lag: LagHistogram | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watches = watches  # the dispatcher's own: channel -> its streams now
        self._stats = stats
        self._chunk = chunk
        self._lag = lag
        self._clock = clock
        self._queue: deque[_Pending] = deque()  # not empty: a drain is scheduled or running
        self._emptied: asyncio.Future[None] | None = None  # what `drained` waits on

    @property
    def pending(self) -> int:
        """Messages not yet handed to all their streams."""
        return len(self._queue)

    async def drained(self) -> None:
        """Return once every message queued so far is handed to all its streams."""
        while self._queue:
            if self._emptied is None or self._emptied.done():
                self._emptied = asyncio.get_running_loop().create_future()
            await self._emptied

    def send(self, channel: str, update: Update, streams: Collection[Watcher]) -> None:
        if not self._queue and len(streams) <= self._chunk:
            self._finish(update, self._deliver(update, streams))
            return
        self._queue.append(_Pending(channel, update, list(streams)))
        if len(self._queue) == 1:
            self._drain()  # the first chunk now, the rest on later turns

    def _drain(self) -> None:
        queue, budget = self._queue, self._chunk
        try:
            while queue and budget > 0:
                job = queue[0]
                current = self._watches.get(job.channel, ())
                end = min(job.at + budget, len(job.streams))
                part = [stream for stream in job.streams[job.at : end] if stream in current]
                budget -= end - job.at
                job.at = end
                job.written += self._deliver(job.update, part)
                if end == len(job.streams):
                    queue.popleft()
                    self._finish(job.update, job.written)
        finally:
            if queue:  # also after a stream raised: the others still get theirs
                asyncio.get_running_loop().call_soon(self._drain)
            elif self._emptied is not None and not self._emptied.done():
                self._emptied.set_result(None)

    def _deliver(self, update: Update, streams: Collection[Watcher]) -> int:
        """Hand `update` to `streams` in one pass; how many were written at once."""
        now = self._clock()
        written = coalesced = 0
        for stream in streams:  # the frame encoded once, no task woken per stream
            outcome = stream.deliver(update, now)
            if outcome > 0:
                written += 1
            elif outcome < 0:
                coalesced += 1
        stats = self._stats
        stats.delivered += len(streams)
        stats.written += written
        stats.coalesced += coalesced
        return written

    def _finish(self, update: Update, written: int) -> None:
        if written and update.received and self._lag is not None:
            self._lag.record_since(update.received)  # the last socket written: the largest lag
