"""Garbage collection tuned to a gateway's heap: thousands of streams that live for minutes.

A full collection walks every object the collector tracks. At ten thousand streams that is
about 100 ms, with the event loop (every stream's deliveries) held all along, and it comes
round whenever a quarter more objects have survived into the oldest generation: once every
few seconds under load. The objects of an open stream are not garbage while it is open, so
after a burst of opens (a deploy's reconnect storm, a page of tabs) they are frozen
(`gc.freeze()`, which moves them out of every generation at no cost): full collections then
walk only what is newer than the last freeze, and take a millisecond, not a hundred.

The price: what a frozen stream leaves in reference cycles when it closes is not freed until
the next unfreeze. So once as many frozen streams have closed as GATEWAY_GC_FREEZE_AFTER (and
at least half of those frozen), one full collection runs on everything and the survivors are
frozen again: one pause after a wave of closes, instead of one every few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from praxiom_progress.gateway.stream import StreamStats

log = logging.getLogger("gateway.collection")


class CollectionTuning:
    """The gateway's thresholds, and the freezes after bursts of opens (see the module)."""

    def __init__(
        self,
        stats: StreamStats,
        *,
        thresholds: tuple[int, int, int],
        freeze_after: int,
        check_s: float,
    ) -> None:
        self._stats = stats
        self._thresholds = thresholds
        self.freeze_after = freeze_after
        self.check_s = check_s
        self._previous: tuple[int, int, int] | None = None
        self._opened_seen = stats.opened  # at the previous check
        self._opened_at_freeze = stats.opened
        self._closed_at_compact = stats.closed
        self._frozen_streams = 0  # open when last frozen
        self.freezes = 0
        self.compactions = 0
        self.compact_s = 0.0  # the last compaction's full collection

    def start(self) -> None:
        self._previous = gc.get_threshold()
        gc.set_threshold(*self._thresholds)

    def stop(self) -> None:
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            self.check()

    def check(self) -> str:
        """Freeze, compact or neither (`"freeze"`, `"compact"`, `""`), as the module says."""
        opened, closed = self._stats.opened, self._stats.closed
        # Opens have paused: fewer than a tenth of a burst came since the previous check.
        paused = opened - self._opened_seen < max(1, self.freeze_after // 10)
        self._opened_seen = opened
        if not self.freeze_after:
            return ""
        gone = closed - self._closed_at_compact
        if gone >= max(self.freeze_after, self._frozen_streams // 2):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.compact_s = time.perf_counter() - started
            self._after_freeze(opened, closed)
            self.compactions += 1
            log.debug("gc compacted in %.1f ms", self.compact_s * 1000)
            return "compact"
        if opened - self._opened_at_freeze >= self.freeze_after and paused:
            gc.collect(1)  # the young garbage is freed, not frozen
            gc.freeze()
            self._after_freeze(opened, self._closed_at_compact)
            self.freezes += 1
            return "freeze"
        return ""

    def _after_freeze(self, opened: int, closed: int) -> None:
        self._opened_at_freeze = opened
        self._closed_at_compact = closed
        self._frozen_streams = self._stats.open
