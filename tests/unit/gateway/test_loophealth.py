"""The loop-stall ticker and the collection timer: a held loop and a collection are measured."""

from __future__ import annotations

import asyncio
import gc
import time

from praxiom_progress.gateway.loophealth import GcPauses, LoopHealth, LoopStallTicker


def over(histogram_counts: list[tuple[str, int]], bound: str) -> int:
    """Observations above `bound` (a bucket's `le`), from cumulative buckets."""
    buckets = dict(histogram_counts)
    return buckets["+Inf"] - buckets[bound]


async def test_a_held_loop_is_recorded_as_a_stall_of_about_its_length() -> None:
    ticker = LoopStallTicker(0.005)
    ticker.start()
    try:
        await asyncio.sleep(0.05)  # on time: nothing held the loop
        assert ticker.stalls.count > 0, "the ticker never ran"
        assert over(ticker.stalls.cumulative(), "0.05") == 0
        time.sleep(0.12)  # noqa: ASYNC251 (on purpose) the loop is held: the next tick runs about that late
        await asyncio.sleep(0.02)
        assert over(ticker.stalls.cumulative(), "0.05") == 1
        assert 0.1 <= ticker.longest_s < 1.0
        assert over(ticker.busy.cumulative(), "0.05") == 0  # asleep: no CPU of its own
        spin_until = time.monotonic() + 0.12
        while time.monotonic() < spin_until:  # the loop is held by work of the process
            pass
        await asyncio.sleep(0.02)
        assert over(ticker.busy.cumulative(), "0.05") == 1
    finally:
        ticker.stop()
    seen = ticker.stalls.count
    await asyncio.sleep(0.03)
    assert ticker.stalls.count == seen, "a stopped ticker kept ticking"


def test_every_collection_is_timed_by_its_generation() -> None:
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        pauses.uninstall()
    assert pauses.pauses[0].count >= 1
    assert pauses.pauses[2].count >= 2
    assert pauses.pauses[2].sum_s > 0
    seen = pauses.pauses[2].count
    gc.collect()
    assert pauses.pauses[2].count == seen, "an uninstalled timer kept timing"
    assert pauses._callback not in gc.callbacks


async def test_loop_health_starts_and_stops_both() -> None:
    health = LoopHealth(0.002)
    health.start()
    try:
        await asyncio.sleep(0.02)
        gc.collect(1)
    finally:
        health.stop()
    assert health.ticker.stalls.count > 0
    assert health.gc.pauses[1].count >= 1
    assert health.gc._callback not in gc.callbacks
