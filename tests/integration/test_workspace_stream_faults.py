"""The workspace stream when things go wrong: Redis down and back (it polls PostgreSQL, one
query per stream per SSE_POLL_INTERVAL at most, then returns to pub/sub), and a client that
stops reading (the newest state per task is kept, no terminal state is dropped)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import aiohttp
import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.keys import DISPATCHER, STREAM_STATS
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import workspace_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, ThrowawayRedis, fast_settings, spawn, wait_for
from tests.faults.sse_raw import SseConnection
from tests.sse_client import stream_timeout
from tests.workspace_client import WorkspaceClient

POLL_S = 0.2


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as client:
        yield client


async def write(db: Database, task_id: UUID, message: str) -> Task:
    row = await db.fetch_one(
        "UPDATE background_tasks SET message = %(m)s WHERE id = %(id)s RETURNING *",
        {"id": task_id, "m": message},
    )
    assert row is not None
    return Task.from_row(row)


async def test_redis_down_the_stream_polls_once_per_interval_and_returns_to_pub_sub(
    clean_database: str,
    throwaway_redis: ThrowawayRedis,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    settings = fast_settings(
        clean_database, redis_url=throwaway_redis.url, sse_poll_interval_s=POLL_S
    )
    gateway = LiveGateway(settings)
    await gateway.start()
    dispatcher, stats = gateway.app[DISPATCHER], gateway.app[STREAM_STATS]
    ws = member.workspace_id
    task_id = await spawn(task_store, ws, "validation_kit")
    try:
        async with WorkspaceClient(session, gateway.url, ws, member.token) as client:
            await client.wait_for(lambda c: len(c.events) == 1)
            throwaway_redis.stop()
            await wait_for(_async(lambda: not dispatcher.available))
            polls_before, started = stats.polls, time.monotonic()
            changed = await write(db, task_id, "while Redis is down")  # nobody publishes
            await client.wait_for(lambda c: c.newest()[str(task_id)]["message"] == changed.message)
            await asyncio.sleep(1.0)  # a while of polling, to count the queries
            polls = stats.polls - polls_before
            elapsed = time.monotonic() - started
            assert 1 <= polls <= elapsed / POLL_S + 1, "one read per stream per interval at most"
            assert not client.ended.is_set()

            throwaway_redis.start()
            await wait_for(_async(lambda: dispatcher.available), timeout_s=15)
            publisher_client = connect_redis(throwaway_redis.url)
            publisher = ProgressPublisher(publisher_client)
            polls_back = stats.polls
            live = await write(db, task_id, "Redis is back")
            await wait_for(_async(lambda: publisher.publish_tasks([live])), timeout_s=5)
            await client.wait_for(lambda c: c.newest()[str(task_id)]["message"] == live.message)
            await publisher.aclose()
            await publisher_client.aclose()
            assert stats.polls == polls_back, "back on pub/sub: no more polling"
            versions = [p["version"] for p in client.payloads]
            assert versions == sorted(set(versions))
    finally:
        await gateway.stop()


async def test_a_slow_client_gets_the_newest_state_of_each_task_and_every_terminal_one(
    settings: Settings,
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    redis_client: aioredis.Redis,
) -> None:
    ws = member.workspace_id
    tasks = [await task_store.get_task(await spawn(task_store, ws, "x")) for _ in range(3)]
    port = int(live_gateway.url.rsplit(":", 1)[1])
    laggard = await _open_small(port, ws, member.token)
    await laggard.first
    await wait_for(_async(lambda: len(laggard.events) == 3))
    laggard.pause()
    pad = "x" * 4000
    steps = 300
    for step in range(1, steps + 1):  # ~3.6 MB for a client whose window is 4 kB
        pipe = redis_client.pipeline(transaction=False)
        for task in tasks:
            assert task is not None
            payload = {**task_payload(task), "version": task.version + step,
                       "status": "running", "message": f"{step} {pad}"}  # fmt: skip
            pipe.publish(workspace_channel(ws), encode_payload(payload))
        await pipe.execute()
    for task in tasks:
        assert task is not None
        done = {**task_payload(task), "version": task.version + steps + 1, "status": "completed",
                "message": "done"}  # fmt: skip
        await redis_client.publish(workspace_channel(ws), encode_payload(done))
    await wait_for(_async(lambda: live_gateway.app[DISPATCHER].stats.coalesced > 0))
    laggard.resume()

    def finished() -> bool:
        ended = {e.payload["id"] for e in laggard.events if e.payload["status"] == "completed"}
        return ended == {str(t.id) for t in tasks if t is not None}

    await wait_for(_async(finished), timeout_s=20)
    for task in tasks:
        assert task is not None
        seen = [e.payload for e in laggard.events if e.payload["id"] == str(task.id)]
        versions = [p["version"] for p in seen]
        assert versions == sorted(set(versions)), "per task, versions only go up"
        assert seen[-1]["status"] == "completed"  # the terminal state, never dropped
        assert len(seen) < steps, "it skipped states instead of queueing them all"
    laggard.abort()


async def _open_small(port: int, workspace_id: UUID, token: str) -> SseConnection:
    """A client whose receive window is tiny, so the gateway must hold back for it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET /api/workspaces/{workspace_id}/progress HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    connection = SseConnection(request, rcvbuf=4096)
    await loop.create_connection(lambda: connection, sock=sock)
    return connection


def _async(check: Any) -> Any:
    async def run() -> Any:
        value = check()
        return await value if asyncio.iscoroutine(value) else value

    return run
