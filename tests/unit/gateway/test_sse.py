"""`Last-Event-ID` parsing: only ASCII digits count, so hostile input is ignored, never a 500."""

from __future__ import annotations

import pytest

from praxiom_progress.gateway.sse import parse_version


@pytest.mark.parametrize(("raw", "expected"), [("7", 7), (" 12 ", 12), ("0", 0)])
def test_digits_are_a_version(raw: str, expected: int) -> None:
    assert parse_version(raw) == expected


@pytest.mark.parametrize(
    "raw", [None, "", "²", "①", "١٢", "-1", "1.5", "x", "9" * 20, "4" * 4301, "1e3"]
)
def test_anything_else_is_ignored(raw: str | None) -> None:
    assert parse_version(raw) is None
