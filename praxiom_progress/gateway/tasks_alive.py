"""The asyncio tasks alive in the gateway, counted as they start and finish.

`asyncio.all_tasks()` walks every task the process has (each open stream's handler among
them): 12-18 ms per /metrics scrape at ten thousand streams, with the event loop held. This
count is kept up by the loop's task factory (one done callback per task) and read in O(1).

Every task gets the same callback and the same (empty) context: a task keeps its first done
callback in two fields of its own, so one made per task (a bound method and a copy of the
caller's context) would cost each open stream's two tasks about 300 bytes (tracemalloc
over 1,000 streams).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

_Factory = Any  # asyncio's own type for a task factory is private


class TaskCount:
    """Tasks not done on the running loop, from `start` on (those already running counted)."""

    def __init__(self) -> None:
        self.alive = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: _Factory = None
        self._done = self._finished  # one bound method for every task ...
        self._context = contextvars.Context()  # ... and one context: it reads no variable

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._previous = loop.get_task_factory()  # another app's count, in a test: chained
        for task in asyncio.all_tasks(loop):
            self._follow(task)
        loop.set_task_factory(self._create)  # type: ignore[arg-type]

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.get_task_factory() == self._create:
            loop.set_task_factory(self._previous)

    def _create(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        if self._previous is not None:
            task = self._previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        self._follow(task)
        return task

    def _follow(self, task: asyncio.Future[Any]) -> None:
        self.alive += 1
        task.add_done_callback(self._done, context=self._context)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self.alive -= 1
