"""What an open stream's task sleeps on, task streams and workspace streams alike: woken by a
delivery, by Redis coming or going, by a move to another shard, or by closing. `wait` returns
a plain future, not a coroutine, so a sleeping stream holds no extra frame and no waiter
objects (memory per stream counts at 10,000 of them)."""

from __future__ import annotations

import asyncio


class Wakeable:
    __slots__ = ("_waiter", "_woken")

    def __init__(self) -> None:
        self._waiter: asyncio.Future[bool] | None = None
        self._woken = False  # woken while nobody waited: the next wait returns at once

    def wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)  # taken by its waiter: nothing is left pending
        else:
            self._woken = True

    def wait(self, timeout_s: float | None) -> asyncio.Future[bool]:
        """Await it for a wake: True, or False when `timeout_s` passed quietly."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if self._woken:
            self._woken = False
            waiter.set_result(True)
            return waiter
        # No done-callback of its own (`wake` forgets the waiter it wakes; one that timed out
        # or was cancelled is done, and is replaced by the next wait): a sleeping stream's
        # future then holds only its task's wake-up, inline, with no list, bound method or
        # context copy beside it.
        self._waiter = waiter
        if timeout_s is not None:
            timer = loop.call_later(timeout_s, _expire, waiter)
            waiter.add_done_callback(lambda _: timer.cancel())
        return waiter


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
