"""`runner.backoff.Backoff`: the delays, the one warning per wait, and the retry of a write."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from praxiom_progress.runner.backoff import Backoff
from praxiom_progress.taskstate.errors import InvalidData, StoreUnavailable


def test_delays_double_from_the_first_up_to_the_cap_and_reset_starts_over() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.1


async def test_wait_and_warn_logs_one_line_then_waits_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff(first_s=0.02)
    with caplog.at_level(logging.WARNING, logger="runner"):
        started = time.monotonic()
        await backoff.wait_and_warn("claim failed, retrying", OSError("gone"), action="claim_retry")
    assert time.monotonic() - started >= 0.02
    [record] = caplog.records
    assert record.getMessage() == "claim failed, retrying in 0.0s: gone"
    assert record.action == "claim_retry"  # type: ignore[attr-defined]


async def test_wait_and_warn_ends_early_when_stop_is_set() -> None:
    stop = asyncio.Event()
    backoff = Backoff(first_s=10)
    asyncio.get_running_loop().call_later(0.01, stop.set)
    started = time.monotonic()
    await backoff.wait_and_warn("x failed", OSError(), action="x_retry", stop=stop)
    assert time.monotonic() - started < 1


async def test_retry_calls_again_while_the_store_is_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[int] = []

    async def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreUnavailable("PostgreSQL unavailable: down")
        return "written"

    with caplog.at_level(logging.WARNING, logger="runner"):
        assert await Backoff(first_s=0.001).retry("complete_task", write) == "written"
    assert len(attempts) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "complete_task failed, retrying in 0.0s: PostgreSQL unavailable: down"
    ] * 2
    assert {r.action for r in caplog.records} == {"write_retry"}  # type: ignore[attr-defined]


async def test_retry_lets_any_other_error_through_at_once() -> None:
    async def write() -> None:
        raise InvalidData("PostgreSQL refused a value")

    with pytest.raises(InvalidData):
        await Backoff().retry("fail_task", write)
