"""ReadRouting's rule, on a clock of the test's own: the standby answers only while it has
replayed every commit older than DATABASE_READ_MAX_LAG. The comparison of WAL positions
itself runs against a real standby in tests/integration/test_read_replica.py."""

from __future__ import annotations

from typing import cast

from praxiom_progress.gateway.replica import ReadRouting
from praxiom_progress.taskstate.db import Database

PRIMARY = cast(Database, "primary")  # never queried here: only which one is chosen
STANDBY = cast(Database, "standby")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def routing(clock: Clock, max_lag_s: float = 2.0) -> ReadRouting:
    return ReadRouting(PRIMARY, STANDBY, max_lag_s=max_lag_s, check_interval_s=0.5, clock=clock)


def test_the_primary_answers_until_a_check_has_passed() -> None:
    reads = routing(Clock())
    assert not reads.fresh()
    assert reads.choose() is PRIMARY
    assert (reads.primary_reads, reads.standby_reads) == (1, 0)


def test_the_standby_answers_until_its_last_catch_up_is_older_than_the_lag() -> None:
    clock = Clock()
    reads = routing(clock)
    reads.caught_up_to = clock.now
    clock.now += 2.0
    assert reads.choose() is STANDBY
    clock.now += 0.01
    assert reads.choose() is PRIMARY
    reads.caught_up_to = clock.now  # caught up again
    assert reads.choose() is STANDBY
    assert (reads.primary_reads, reads.standby_reads) == (1, 2)


def test_no_lag_allowed_means_only_a_standby_caught_up_at_this_instant() -> None:
    clock = Clock()
    reads = routing(clock, max_lag_s=0.0)
    reads.caught_up_to = clock.now
    assert reads.choose() is STANDBY
    clock.now += 0.001
    assert reads.choose() is PRIMARY
