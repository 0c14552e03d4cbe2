"""`gateway.tasks_alive.TaskCount`: the count /metrics exports follows the tasks that start
and finish, those already running when it started included, and it chains a factory."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from praxiom_progress.gateway.tasks_alive import TaskCount


def not_done() -> int:
    return len(asyncio.all_tasks())


async def test_the_count_follows_tasks_as_they_start_and_finish() -> None:
    release = asyncio.Event()
    earlier = asyncio.create_task(release.wait())
    await asyncio.sleep(0)
    count = TaskCount()
    count.start()
    try:
        assert count.alive == not_done()  # this test's own task and `earlier`
        later = [asyncio.create_task(release.wait(), name=f"later-{i}") for i in range(3)]
        assert count.alive == not_done()
        assert later[0].get_name() == "later-0"  # what create_task is given still applies
        later[1].cancel()
        await asyncio.sleep(0)  # it ends; its done callbacks run on the next turn
        await asyncio.sleep(0)
        assert count.alive == not_done()
        release.set()
        await asyncio.gather(earlier, later[0], later[2])
        assert count.alive == not_done() == 1
    finally:
        count.stop()
    assert asyncio.get_running_loop().get_task_factory() is None
    after = asyncio.create_task(asyncio.sleep(0))
    assert count.alive == 1  # stopped: no longer counting
    await after


async def test_a_factory_already_installed_still_makes_the_tasks() -> None:
    made: list[str] = []
    loop = asyncio.get_running_loop()

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        made.append("theirs")
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    count = TaskCount()
    count.start()
    try:
        await asyncio.create_task(asyncio.sleep(0))
        assert made == ["theirs"] and count.alive == not_done()
    finally:
        count.stop()
        assert loop.get_task_factory() is factory
        loop.set_task_factory(None)
