"""Persist, then publish, written once: every runner write hands the tasks it committed to
`ProgressPublisher.publish_tasks` through here, after the write has returned and never
before, so a client never sees a state PostgreSQL does not hold."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher


class TaskWriter:
    def __init__(self, publisher: ProgressPublisher) -> None:
        self._publisher = publisher

    async def write_one(self, write: Awaitable[Task | None]) -> Task | None:
        """Await one task's write, then publish it; None (nothing published) when the write's
        guard matched nothing."""
        task = await write
        await self.publish([] if task is None else [task])
        return task

    async def write_many(self, write: Awaitable[Sequence[Task]]) -> Sequence[Task]:
        """Await a write of many tasks, then publish them all in one round trip."""
        return await self.publish(await write)

    async def publish(self, tasks: Sequence[Task]) -> Sequence[Task]:
        """Publish tasks whose write has committed (a claim's, published by its task's job).
        Never raises: Redis is best effort, PostgreSQL holds the state either way."""
        await self._publisher.publish_tasks(tasks)
        return tasks
