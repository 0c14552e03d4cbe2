"""Garbage collection tuned to a gateway's heap: thousands of streams that live for minutes.

A full collection walks every object the collector tracks. At ten thousand streams that is
about 100 ms, with the event loop (every stream's deliveries) held all along, and it comes
round whenever a quarter more objects have survived into the oldest generation: once every
few seconds under load. The objects of an open stream are not garbage while it is open, so
after a burst of opens (a deploy's reconnect storm, a page of tabs) they are frozen
(`gc.freeze()`, which moves them out of every generation at no cost): full collections then
walk only what is newer than the last freeze, and take a millisecond, not a hundred. The
freeze comes right after the first young collection that follows every GATEWAY_GC_FREEZE_AFTER
opens (a `gc.callbacks` entry asks the loop for it), so the objects of a storm's streams are
frozen before the ten young collections that could bring on a full one.

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked = False  # a freeze is asked of the loop and has not run yet
        self._opened_at_freeze = stats.opened
        self._closed_at_compact = stats.closed
        self._frozen_streams = 0  # open when last frozen
        self.freezes = 0
        self.compactions = 0
        self.compact_s = 0.0  # the last compaction's full collection

    def start(self) -> None:
        self._previous = gc.get_threshold()
        gc.set_threshold(*self._thresholds)
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._after_collection)

    def stop(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None

    def _after_collection(self, phase: str, info: dict[str, int]) -> None:
        """A young collection just moved survivors on: freeze them soon, if a burst's worth
        of streams opened since the last freeze (not here: the collector is still running)."""
        if phase != "stop" or info.get("generation", 0) < 1 or self._asked:
            return
        if self._loop is not None and self._burst():
            self._asked = True
            self._loop.call_soon_threadsafe(self._freeze_asked)

    def _freeze_asked(self) -> None:
        if self._burst():
            self._freeze()
        self._asked = False

    def _burst(self) -> bool:
        return bool(self.freeze_after) and (
            self._stats.opened - self._opened_at_freeze >= self.freeze_after
        )

    def _freeze(self) -> None:
        self._asked = True  # the young collection below must not ask for another freeze
        gc.collect(1)  # the young garbage is freed, not frozen
        gc.freeze()
        self._after_freeze(self._stats.opened, self._closed_at_compact)
        self.freezes += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            self.check()

    def check(self) -> str:
        """Compact, freeze or neither (`"compact"`, `"freeze"`, `""`), as the module says;
        the periodic check behind the freezes asked for by young collections."""
        if not self.freeze_after:
            return ""
        opened, closed = self._stats.opened, self._stats.closed
        if closed - self._closed_at_compact >= max(self.freeze_after, self._frozen_streams // 2):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.compact_s = time.perf_counter() - started
            self._after_freeze(opened, closed)
            self.compactions += 1
            log.debug("gc compacted in %.1f ms", self.compact_s * 1000)
            return "compact"
        if self._burst():
            self._freeze()
            self._asked = False
            return "freeze"
        return ""

    def _after_freeze(self, opened: int, closed: int) -> None:
        self._opened_at_freeze = opened
        self._closed_at_compact = closed
        self._frozen_streams = self._stats.open
