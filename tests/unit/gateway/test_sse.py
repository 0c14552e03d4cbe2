"""`Last-Event-ID` parsing: only ASCII digits count, so hostile input is ignored, never a 500."""

from __future__ import annotations

import pytest

from praxiom_progress.gateway.sse import parse_version, ping_interval_s


@pytest.mark.parametrize(("raw", "expected"), [("7", 7), (" 12 ", 12), ("0", 0)])
def test_digits_are_a_version(raw: str, expected: int) -> None:
    assert parse_version(raw) == expected


@pytest.mark.parametrize(
    "raw", [None, "", "²", "①", "١٢", "-1", "1.5", "x", "9" * 20, "4" * 4301, "1e3"]
)
def test_anything_else_is_ignored(raw: str | None) -> None:
    assert parse_version(raw) is None


def test_each_stream_pings_at_a_period_of_its_own_never_longer_than_the_setting() -> None:
    """Streams opened together must not ping together: one wave of writes holds the loop."""
    periods = [ping_interval_s(15.0) for _ in range(2000)]
    assert all(12.0 <= p <= 15.0 for p in periods)
    assert max(periods) - min(periods) > 2.0, "the periods are not spread"
    assert len({round(p, 3) for p in periods}) > 1000
