"""Spawns and cancels are not published to Redis (the gateway's Redis user may only
subscribe, and an application spawning in its own transaction holds no Redis credentials):
every gateway hears their NOTIFY and hands the task to its own streams. The idle re-read is
minutes away in these tests, so only that path can deliver."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID

import aiohttp

from praxiom_progress.gateway.keys import TASK_WRITES
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, ProgressRecorder, bearer, spawn
from tests.sse_client import events, stream_timeout


async def _statuses_around(
    gateway: LiveGateway, task_id: UUID, token: str, act: Callable[[], Awaitable[None]]
) -> list[str]:
    """The statuses a stream of the task receives when `act` runs after its first event."""
    async with aiohttp.ClientSession(timeout=stream_timeout(10)) as session:
        url = f"{gateway.url}/api/tasks/{task_id}/progress"
        async with session.get(url, headers=bearer(token)) as response:
            stream = events(response)
            first = await anext(stream)
            await act()
            return [first.payload["status"], *[e.payload["status"] async for e in stream]]


async def test_a_cancel_on_one_gateway_ends_a_stream_on_another_without_a_publish(
    settings: Settings,
    member: IssuedToken,
    workspace_id: UUID,
    task_store: TaskStore,
    recorder: ProgressRecorder,
) -> None:
    quiet = settings.replace(sse_idle_timeout_s=300)
    watching, cancelling = LiveGateway(quiet), LiveGateway(quiet)
    # Spawned before the gateways LISTEN: the spawn's own NOTIFY, heard after the stream began
    # watching (it opens in a few ms), would be one more offer, and the count one too many.
    task_id = await spawn(task_store, workspace_id, "research")
    await watching.start()
    await cancelling.start()

    async def cancel() -> None:
        async with aiohttp.ClientSession() as session:
            url = f"{cancelling.url}/api/tasks/{task_id}/cancel"
            async with session.post(url, headers=bearer(member.token)) as answer:
                assert answer.status == 202

    try:
        statuses = await _statuses_around(watching, task_id, member.token, cancel)
        offered = watching.app[TASK_WRITES].offered, cancelling.app[TASK_WRITES].offered
    finally:
        await watching.stop()
        await cancelling.stop()
    assert statuses == ["pending", "cancelled"]
    assert offered == (1, 0)  # the cancelling gateway watches nothing: it read nothing
    await asyncio.sleep(0.2)  # a publish would have reached the recorder by now
    assert recorder.of(task_id) == []


async def test_an_applications_own_write_reaches_the_stream(
    settings: Settings, member: IssuedToken, workspace_id: UUID, task_store: TaskStore
) -> None:
    """A cancel committed by another program (here: the store, as an application's code
    does through the public API) is announced by PostgreSQL alone."""
    gateway = LiveGateway(settings.replace(sse_idle_timeout_s=300))
    await gateway.start()
    task_id = await spawn(task_store, workspace_id, "research")

    async def cancel() -> None:
        await task_store.cancel_task(task_id)

    try:
        statuses = await _statuses_around(gateway, task_id, member.token, cancel)
    finally:
        await gateway.stop()
    assert statuses == ["pending", "cancelled"]
