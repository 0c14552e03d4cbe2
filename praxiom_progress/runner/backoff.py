"""Back off, warn, try again: the one retry loop of the runner, shared by the claim loop, the
LISTEN connection and every write a task's end waits on while PostgreSQL is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from praxiom_progress.taskstate.errors import StoreUnavailable

log = logging.getLogger("runner")

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays that double from `first_s` up to `max_s`; `reset()` after a success."""

    first_s: float = 0.1
    max_s: float = 5.0
    _next: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._next = min(self.max_s, self._next * 2 if self._next else self.first_s)
        return self._next

    def reset(self) -> None:
        self._next = 0.0

    async def wait_and_warn(
        self, failed: str, exc: BaseException, *, action: str, stop: asyncio.Event | None = None
    ) -> None:
        """Warn once (`<failed> in <delay>s: <exc>`), then wait out the next delay, or until
        `stop` is set, whichever comes first."""
        delay = self.next_delay()
        log.warning("%s in %.1fs: %s", failed, delay, exc, extra={"action": action})
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()

    async def retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` again while PostgreSQL is unavailable; the caller's timeout bounds it."""
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                await self.wait_and_warn(f"{what} failed, retrying", exc, action="write_retry")
