"""What a stream's task sleeps on (gateway.wakeup): no wake is ever lost, and a sleeping
stream's future holds nothing but its task's own wake-up."""

from __future__ import annotations

import asyncio

from praxiom_progress.gateway.wakeup import Wakeable


async def test_a_wake_before_the_wait_returns_it_at_once() -> None:
    wakeable = Wakeable()
    wakeable.wake()
    assert await wakeable.wait(None) is True
    sleeping = asyncio.ensure_future(wakeable.wait(0.05))
    assert await sleeping is False  # that wake was taken: the next wait sleeps


async def test_a_wake_reaches_the_task_sleeping_on_it() -> None:
    wakeable = Wakeable()
    sleeping = asyncio.ensure_future(wakeable.wait(None))
    await asyncio.sleep(0)
    wakeable.wake()
    assert await sleeping is True


async def test_a_wake_while_the_woken_task_is_busy_is_kept_for_its_next_wait() -> None:
    """The stream took its update and is writing it (not waiting) when the next one comes:
    that wake must make the next wait return at once, or the stream would sleep on it."""
    wakeable = Wakeable()
    first = asyncio.ensure_future(wakeable.wait(None))
    await asyncio.sleep(0)
    wakeable.wake()
    assert await first is True
    wakeable.wake()  # the task is busy: nobody waits
    assert await asyncio.wait_for(wakeable.wait(None), 1.0) is True


async def test_a_wait_that_timed_out_or_was_cancelled_loses_no_later_wake() -> None:
    wakeable = Wakeable()
    assert await wakeable.wait(0.01) is False
    wakeable.wake()
    assert await asyncio.wait_for(wakeable.wait(None), 1.0) is True
    cancelled = asyncio.ensure_future(wakeable.wait(None))
    cancelled.cancel()
    await asyncio.sleep(0)
    wakeable.wake()
    assert await asyncio.wait_for(wakeable.wait(None), 1.0) is True


async def test_a_sleeping_streams_future_holds_only_its_tasks_wake_up() -> None:
    """Memory per stream counts: a done-callback of the wakeable's own would add a bound
    method, a copy of the context and a list of callbacks to every sleeping stream."""
    wakeable = Wakeable()
    waiter = wakeable.wait(None)

    async def sleep() -> bool:
        return await waiter

    task = asyncio.ensure_future(sleep())
    await asyncio.sleep(0)
    assert len(waiter._callbacks) == 1  # type: ignore[attr-defined]  # the task's wake-up
    wakeable.wake()
    assert await task is True
