"""Publish-to-send lag, measured cheaply enough for the per-event path.

The dispatcher stamps a sampled message with the time it arrived (at most one
message per `interval_s`; every other update carries 0.0), and each stream that
writes a stamped update records how long it took to reach its socket. So a
busy gateway pays one float comparison per event, and a stamped message still
measures its whole fan-out (the last stream written sees the largest lag).
Recording is a bisect into fixed buckets, without a lock; the metrics
collector reads the counts at scrape time.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

#: Upper bounds in seconds: sub-millisecond fan-out up to a stalled event loop.
LAG_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class LagSampler:
    """Decides which incoming messages carry a receive time."""

    __slots__ = ("_clock", "_interval_s", "_last")

    def __init__(
        self, interval_s: float = 0.05, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last = float("-inf")

    def stamp(self) -> float:
        """Now, if this message is sampled; else 0.0 (not measured)."""
        now = self._clock()
        if now - self._last < self._interval_s:
            return 0.0
        self._last = now
        return now


class LagHistogram:
    """Cumulative-at-read bucket counts of observed lags (seconds)."""

    __slots__ = ("bounds", "counts", "sum_s")

    def __init__(self, bounds: tuple[float, ...] = LAG_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum_s = 0.0

    def record_since(self, received: float) -> None:
        self.observe(time.monotonic() - received)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum_s += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (`le`, observations at or below it), +Inf last."""
        total, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets
