"""Persist, then publish, written once: every runner write hands the tasks it committed to
`ProgressPublisher.publish_tasks` through here, after the write has returned and never
before, so a client never sees a state PostgreSQL does not hold.

Publishes are grouped: a lone one goes out at once, and the ones made while it is in flight
(the claims of a batch, the ends written together) leave together in the next round trip.
A publish whose caller is cancelled meanwhile is still sent: its write has committed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Sequence

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher

log = logging.getLogger("runner")


class TaskWriter:
    def __init__(self, publisher: ProgressPublisher) -> None:
        self._publisher = publisher
        self._pending: list[tuple[Task, float]] = []  # with the loop time it must leave by
        self._waiters: list[asyncio.Future[None]] = []
        self._sender: asyncio.Task[None] | None = None

    async def write_one(self, write: Awaitable[Task | None]) -> Task | None:
        """Await one task's write, then publish it; None (nothing published) when the write's
        guard matched nothing."""
        task = await write
        await self.publish([] if task is None else [task])
        return task

    async def publish(self, tasks: Sequence[Task]) -> Sequence[Task]:
        """Publish tasks whose write has committed, together with whatever else is published
        meanwhile; returns once they were sent. Never raises: Redis is best effort,
        PostgreSQL holds the state either way."""
        if not tasks:
            return tasks
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.publish_soon(tasks)
        self._waiters.append(waiter)
        await asyncio.shield(waiter)  # a cancelled caller's tasks are sent all the same
        return tasks

    def publish_soon(self, tasks: Sequence[Task], *, within_s: float = math.inf) -> None:
        """Queue tasks whose write has committed for the next round trip, without waiting for
        it. Publishes leave in the order they were made, so whatever is published for these
        tasks afterwards arrives after them. Progress reports use it (runner.batch): their
        handlers go on at once. The claim and the end await theirs (`publish`): a handler that
        blocks the loop must not hold those back.

        `within_s`: not sent at all when the loop gets to them later than that (a handler held
        it): by then their task may have been reaped and that end published, which a late
        state must not follow. PostgreSQL holds them either way."""
        deadline = asyncio.get_running_loop().time() + within_s
        self._pending.extend((task, deadline) for task in tasks)
        if self._sender is None and self._pending:
            self._sender = asyncio.create_task(self._send(), name="task-writer-publish")

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                queued, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                now = loop.time()
                tasks = [task for task, deadline in queued if now <= deadline]
                if len(tasks) < len(queued):
                    late_s = now - min(deadline for _, deadline in queued)
                    log.warning(
                        "%d progress publish(es) not sent: the loop got to them %.1fs past "
                        "their deadline (a handler blocking it?); PostgreSQL has their state",
                        len(queued) - len(tasks),
                        late_s,
                        extra={"action": "publish_dropped_late"},
                    )
                try:
                    await self._publisher.publish_tasks(tasks)
                except Exception:  # a bug: publish_tasks counts and logs Redis's own failures
                    log.exception("publishing %d task(s) failed", len(tasks),
                                  extra={"action": "publish_error"})  # fmt: skip
                finally:
                    _release(waiters)
        finally:
            # In the same step as the last (empty) look at `_pending`: a publish made after
            # it starts a sender of its own. Cancelled (the loop closing): nobody waits on.
            self._sender = None
            _release(self._waiters)
            self._waiters = []


def _release(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
