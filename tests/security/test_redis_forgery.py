"""Someone who can PUBLISH to Redis cannot end or freeze a stream: a payload for another task
is dropped, and one implausibly far ahead is checked against PostgreSQL before anything is
sent, so the real updates that follow still arrive."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.keys import DISPATCHER, STREAM_STATS
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.status import TaskStatus
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer, spawn, wait_for
from tests.security.kit import make_scene
from tests.sse_client import events, stream_timeout


@pytest.fixture(params=[True, False], ids=["direct-write", "response-write"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.replace(sse_direct_write=request.param, sse_idle_timeout_s=60)


async def test_forged_payloads_neither_end_nor_block_a_stream(
    settings: Settings,
    db: Database,
    task_store: TaskStore,
    redis_client: aioredis.Redis,
) -> None:
    gateway = LiveGateway(settings)
    await gateway.start()
    scene = await make_scene(db, task_store)
    other_id = await spawn(task_store, scene.member.workspace_id, "research")
    task = await task_store.get_task(scene.task_id)
    stranger = await task_store.get_task(other_id)
    assert task is not None and stranger is not None
    channel = progress_channel(task.id)
    url = f"{gateway.url}/api/tasks/{task.id}/progress"
    try:
        async with (
            aiohttp.ClientSession(timeout=stream_timeout(10)) as session,
            session.get(url, headers=bearer(scene.member.token)) as response,
        ):
            stream = events(response)
            first = await anext(stream)
            assert first.payload["version"] == task.version

            # Another task's payload on this channel, and one a million versions ahead.
            wrong_task = dataclasses.replace(stranger, status=TaskStatus.COMPLETED, version=999)
            await redis_client.publish(channel, encode_payload(task_payload(wrong_task)))
            ahead = dataclasses.replace(task, status=TaskStatus.COMPLETED, version=1_000_000)
            await redis_client.publish(channel, encode_payload(task_payload(ahead)))
            dispatcher = gateway.app[DISPATCHER]
            await wait_for(lambda: _counted(gateway, dispatcher), 5)

            # The real next state: PostgreSQL's, written and published as the runner does.
            cancelled = await task_store.cancel_task(task.id)
            await redis_client.publish(channel, encode_payload(task_payload(cancelled)))
            rest = [event.payload async for event in stream]
    finally:
        await gateway.stop()
    assert [p["version"] for p in rest] == [cancelled.version], rest
    assert rest[-1]["status"] == "cancelled"
    assert all(p["id"] == str(task.id) for p in rest)


async def _counted(gateway: LiveGateway, dispatcher: Any) -> bool:
    await asyncio.sleep(0)
    return dispatcher.stats.mismatched == 1 and gateway.app[STREAM_STATS].suspect_jumps == 1
