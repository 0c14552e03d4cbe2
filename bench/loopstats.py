"""Our gateway's event loop over a window, from its own `/metrics`: stalls and collections.

`praxiom_gateway_loop_stall_seconds` (how late a 5 ms timer ran) and
`praxiom_gateway_gc_pause_seconds{generation}` are cumulative histograms; a window's figures
are the difference of two scrapes. A baseline server exports neither: its figures are None.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

STALL = "praxiom_gateway_loop_stall_seconds"
BUSY = "praxiom_gateway_loop_stall_cpu_seconds"
PAUSE = "praxiom_gateway_gc_pause_seconds"
#: Bucket bounds (ms) the report lists stalls above.
SHOWN_MS = (5.0, 10.0, 20.0, 50.0, 100.0)

Buckets = dict[float, float]  # le (seconds) -> cumulative count


@dataclass
class Histogram:
    buckets: Buckets = field(default_factory=dict)
    total_s: float = 0.0

    @property
    def count(self) -> float:
        return self.buckets.get(math.inf, 0.0)

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(
            {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.total_s - other.total_s,
        )

    def above(self, bound_s: float) -> int:
        """Observations over `bound_s` (a bucket bound)."""
        return int(self.count - self.buckets.get(bound_s, 0.0))

    def worst_ms(self) -> tuple[float, float]:
        """The bucket the worst observation fell in, as (lower, upper) ms; (0, 0) if none."""
        lower = previous = 0.0
        worst = (0.0, 0.0)
        for le in sorted(self.buckets):
            if self.buckets[le] > previous:
                worst = (lower * 1000, le * 1000)
            previous = self.buckets[le]
            lower = le
        return worst


@dataclass
class LoopSnapshot:
    stalls: Histogram
    pauses: dict[str, Histogram]  # by generation
    busy: Histogram  # the process's own CPU within each stall (empty: not exported)


@dataclass
class LoopStats:
    """One window's: ticks, stalls over each shown bound, the worst; collections by generation."""

    ticks: int
    stalls_over: dict[float, int]  # bound (ms) -> stalls longer
    worst_stall_ms: tuple[float, float]
    busy_over: dict[float, int]  # the same, of the process's own CPU within each stall
    worst_busy_ms: tuple[float, float]
    gc_count: dict[str, int]
    gc_total_ms: dict[str, float]
    gc_worst_ms: dict[str, tuple[float, float]]


def scrape(port: int) -> LoopSnapshot | None:
    """The histograms now; None when the server exports none (a baseline)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    stalls, busy = Histogram(), Histogram()
    pauses: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (STALL, PAUSE, BUSY):
            continue
        for sample in family.samples:
            if family.name == PAUSE:
                target = pauses.setdefault(sample.labels.get("generation", "?"), Histogram())
            else:
                target = stalls if family.name == STALL else busy
            if sample.name.endswith("_bucket"):
                target.buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                target.total_s = sample.value
    return LoopSnapshot(stalls, pauses, busy) if stalls.buckets else None


def window(before: LoopSnapshot | None, after: LoopSnapshot | None) -> LoopStats | None:
    if before is None or after is None:
        return None
    stalls = after.stalls.minus(before.stalls)
    busy = after.busy.minus(before.busy)
    pauses = {g: h.minus(before.pauses.get(g, Histogram())) for g, h in after.pauses.items()}
    return LoopStats(
        ticks=int(stalls.count),
        stalls_over={ms: stalls.above(ms / 1000) for ms in SHOWN_MS},
        worst_stall_ms=stalls.worst_ms(),
        busy_over={ms: busy.above(ms / 1000) for ms in SHOWN_MS},
        worst_busy_ms=busy.worst_ms(),
        gc_count={g: int(h.count) for g, h in sorted(pauses.items())},
        gc_total_ms={g: h.total_s * 1000 for g, h in sorted(pauses.items())},
        gc_worst_ms={g: h.worst_ms() for g, h in sorted(pauses.items())},
    )


def describe(stats: LoopStats | None) -> str:
    """One line for a report or a terminal."""
    if stats is None:
        return "n/a (not exported)"
    over = ", ".join(f">{ms:g} ms: {n}" for ms, n in stats.stalls_over.items())
    lo, hi = stats.worst_stall_ms
    own = ", ".join(f">{ms:g} ms: {n}" for ms, n in stats.busy_over.items())
    own_lo, own_hi = stats.worst_busy_ms
    gcs = "; ".join(
        f"gen{g} {stats.gc_count[g]} x {stats.gc_total_ms[g]:.0f} ms "
        f"(worst {stats.gc_worst_ms[g][0]:g}-{stats.gc_worst_ms[g][1]:g} ms)"
        for g in stats.gc_count
    )
    return (
        f"stalls {over} (worst {lo:g}-{hi:g} ms, {stats.ticks} ticks); of which on our own "
        f"CPU {own} (worst {own_lo:g}-{own_hi:g} ms); GC {gcs}"
    )
