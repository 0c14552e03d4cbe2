"""The collector's tuning: thresholds set and given back, a freeze after a burst of opens (asked
for by the next young collection, or by the periodic check), and one full collection once many
frozen streams have closed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from praxiom_progress.gateway.collection import CollectionTuning
from praxiom_progress.gateway.stream import StreamStats


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (freezing is process-wide)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def tuning(stats: StreamStats, freeze_after: int = 100) -> CollectionTuning:
    return CollectionTuning(
        stats, thresholds=(5000, 20, 50), freeze_after=freeze_after, check_s=1.0
    )


class Cycle:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_thresholds_are_set_at_start_and_given_back_at_stop() -> None:
    before = gc.get_threshold()
    tuned = tuning(StreamStats())
    tuned.start()
    try:
        assert gc.get_threshold() == (5000, 20, 50)
    finally:
        tuned.stop()
    assert gc.get_threshold() == before


def test_a_burst_of_opens_is_frozen_by_the_periodic_check() -> None:
    stats = StreamStats()
    tuned = tuning(stats)
    stats.opened = 99  # not yet a burst
    assert tuned.check() == ""
    assert gc.get_freeze_count() == 0
    stats.opened = 100
    assert tuned.check() == "freeze"
    assert gc.get_freeze_count() > 0
    assert tuned.freezes == 1
    stats.opened = 150
    assert tuned.check() == "", "fewer opens than a burst since the freeze"


async def test_a_young_collection_after_a_burst_asks_the_loop_for_a_freeze() -> None:
    stats = StreamStats()
    tuned = tuning(stats)
    tuned.start()
    try:
        gc.collect(1)
        await asyncio.sleep(0)
        assert tuned.freezes == 0, "no burst of opens yet"
        stats.opened = 100
        gc.collect(0)  # the youngest generation alone moves nothing to the old one
        await asyncio.sleep(0)
        assert tuned.freezes == 0
        gc.collect(1)
        assert tuned.freezes == 0, "not inside the collector: on the loop, soon"
        await asyncio.sleep(0)
        assert tuned.freezes == 1
        assert gc.get_freeze_count() > 0
        gc.collect(1)
        await asyncio.sleep(0)
        assert tuned.freezes == 1, "one freeze per burst"
    finally:
        tuned.stop()
    assert tuned._after_collection not in gc.callbacks
    stats.opened = 1000
    gc.collect(1)
    await asyncio.sleep(0)
    assert tuned.freezes == 1, "a stopped tuning froze"


def test_young_garbage_is_freed_not_frozen() -> None:
    stats = StreamStats()
    tuned = tuning(stats)
    stats.opened = 100
    garbage = Cycle()
    del garbage
    frees: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            frees.append(info["collected"])

    gc.callbacks.append(count)
    try:
        assert tuned.check() == "freeze"
    finally:
        gc.callbacks.remove(count)
    assert sum(frees) >= 1


def test_many_frozen_streams_closed_means_one_full_collection() -> None:
    stats = StreamStats()
    tuned = tuning(stats)
    stats.opened = 1000
    assert tuned.check() == "freeze"  # 1,000 open streams frozen
    stats.closed = 400  # fewer than half of them gone: still worth keeping frozen
    assert tuned.check() == ""
    frozen = Cycle()  # left in a cycle by a frozen stream
    gc.freeze()
    del frozen
    stats.closed = 500
    assert tuned.check() == "compact"
    assert tuned.compactions == 1
    assert tuned.compact_s > 0
    assert gc.get_freeze_count() > 0, "the survivors are frozen again"
    assert tuned.check() == "", "the closes are counted from the compaction on"


def test_freeze_after_0_never_freezes() -> None:
    stats = StreamStats()
    tuned = tuning(stats, freeze_after=0)
    stats.opened, stats.closed = 10_000, 9_000
    assert tuned.check() == ""
    assert gc.get_freeze_count() == 0
