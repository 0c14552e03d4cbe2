"""The design's central promise, made deterministic: no update is lost between a stream's
snapshot and its subscription.

The gateway opens a live stream in four steps: subscribe, wait for Redis to confirm, read the
row, send it. Through the test seam (gateway.opening) this test commits and publishes an
update at every instant of that sequence, as a runner would (persist, then publish), while
the gateway's Redis traffic passes a proxy that holds the SUBSCRIBE back until the dispatcher
waits for its confirmation: so "Redis has not seen the subscription yet" lasts exactly as long
as the gateway lets it. Every stream must then receive every version above its first event,
in order, by pub/sub alone (the idle re-read, which would repair a loss, is set far away).

It fails when the snapshot is read before the subscription, and when the dispatcher returns
from `watch` without waiting for the confirmation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import aiohttp
import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.keys import DISPATCHER, OPENING_HOOKS, STREAM_SLOTS, STREAMS
from praxiom_progress.gateway.opening import OpeningHooks
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer, redis_url, spawn, wait_for
from tests.sse_client import events, stream_timeout
from tests.tcp_proxy import GatedProxy, redis_gate


class Writer:
    """Commits an update to a task, then publishes it straight to Redis: a runner's order."""

    def __init__(self, db: Database, publisher: ProgressPublisher) -> None:
        self._db = db
        self._publisher = publisher
        self.versions: list[int] = []

    async def commit_and_publish(self, task_id: UUID, instant: str) -> None:
        row = await self._db.fetch_one(
            "UPDATE background_tasks SET message = %(m)s WHERE id = %(id)s RETURNING *",
            {"id": task_id, "m": f"committed at {instant}"},
        )
        assert row is not None
        task = Task.from_row(row)
        self.versions.append(task.version)
        assert await self._publisher.publish_tasks([task]) > 0

    async def cancel(self, task_id: UUID) -> None:
        """The terminal state, committed and published."""
        task = await TaskStore(self._db).cancel_task(task_id)
        self.versions.append(task.version)
        assert await self._publisher.publish_tasks([task]) > 0


class EveryInstant(OpeningHooks):
    """At each step of the open sequence, one committed and published update. The gateway's
    SUBSCRIBE is held at the proxy from before it is sent until the dispatcher waits for its
    confirmation (or, when it does not wait, until the snapshot is read)."""

    def __init__(self, writer: Writer, proxy: GatedProxy) -> None:
        self._writer = writer
        self._proxy = proxy
        self.instants: list[str] = []

    async def _at(self, task_id: UUID, instant: str) -> None:
        self.instants.append(instant)
        await self._writer.commit_and_publish(task_id, instant)

    async def subscribing(self, task_id: UUID) -> None:
        self._proxy.open.clear()
        await self._at(task_id, "subscribing")

    async def confirming(self, channel: str) -> None:
        await self._wait_until_held()
        await self._at(UUID(channel.rsplit(":", 1)[1]), "confirming")  # Redis drops this one
        self._proxy.open.set()

    async def subscribed(self, task_id: UUID) -> None:
        await self._at(task_id, "subscribed")

    async def snapshot_read(self, task_id: UUID) -> None:
        await self._at(task_id, "snapshot_read")
        self._proxy.open.set()

    async def _wait_until_held(self) -> None:
        """The SUBSCRIBE has reached the gate (it is written before `confirming` is awaited,
        but the proxy reads it from the socket in its own time)."""

        async def held() -> bool:
            return self._proxy.held_bytes > 0

        await wait_for(held, timeout_s=5, interval_s=0.005)


@pytest.fixture
async def proxy() -> AsyncIterator[GatedProxy]:
    gate = redis_gate(redis_url())
    await gate.start()
    yield gate
    gate.open.set()
    await gate.cut()


@pytest.fixture
async def direct_redis() -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_url())
    yield client
    await client.aclose()


@pytest.mark.parametrize("direct_write", [True, False], ids=["direct-write", "response-write"])
async def test_every_version_committed_during_the_open_sequence_reaches_the_stream(
    settings: Settings,
    db: Database,
    member: IssuedToken,
    task_store: TaskStore,
    proxy: GatedProxy,
    direct_redis: aioredis.Redis,
    direct_write: bool,
) -> None:
    publisher = ProgressPublisher(direct_redis)
    writer = Writer(db, publisher)
    hooks = EveryInstant(writer, proxy)
    gateway = LiveGateway(
        settings.replace(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            sse_idle_timeout_s=600.0,  # no re-read may repair a lost update
            sse_direct_write=direct_write,
        )
    )
    gateway.app[OPENING_HOOKS] = hooks
    await gateway.start()
    try:
        async with aiohttp.ClientSession(timeout=stream_timeout(20)) as session:
            for _ in range(3):  # each task's channel is new: every open subscribes afresh
                hooks.instants.clear()
                writer.versions.clear()
                task_id = await spawn(task_store, member.workspace_id, "validation_kit")
                received = await _watch(session, gateway, member, task_id, writer, direct_redis)
                first = received[0]
                expected = [v for v in writer.versions if v > first]
                assert received == [first, *expected], (
                    f"committed {writer.versions}, streamed {received} (at {hooks.instants})"
                )
                assert hooks.instants == [
                    "subscribing",
                    "confirming",
                    "subscribed",
                    "snapshot_read",
                ]
    finally:
        await gateway.stop()


async def _watch(
    session: aiohttp.ClientSession,
    gateway: LiveGateway,
    member: IssuedToken,
    task_id: UUID,
    writer: Writer,
    direct_redis: aioredis.Redis,
) -> list[int]:
    """Open the stream, then (the open sequence over) one more update and the terminal one,
    each once Redis holds the subscription; the versions streamed, to the end."""
    url = f"{gateway.url}/api/tasks/{task_id}/progress"
    received: list[int] = []
    async with session.get(url, headers=bearer(member.token)) as response:
        assert response.status == 200
        async for event in events(response):
            received.append(int(event.payload["version"]))
            if len(received) == 1:
                await _until_subscribed(direct_redis, task_id)
                await writer.commit_and_publish(task_id, "streaming")
                await writer.commit_and_publish(task_id, "streaming again")
                await writer.cancel(task_id)
    return received


async def _until_subscribed(direct_redis: aioredis.Redis, task_id: UUID) -> None:
    channel = progress_channel(task_id)

    async def subscribed() -> bool:
        counts = dict(await direct_redis.pubsub_numsub(channel))
        return int(counts.get(channel.encode(), 0)) >= 1

    await wait_for(subscribed, timeout_s=5, interval_s=0.01)


class DeleteOnSubscribed(OpeningHooks):
    """Deletes the task once the stream's subscription is confirmed: after its caller was
    authorized, before its row is read."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def subscribed(self, task_id: UUID) -> None:
        await self._db.fetch_all(
            "DELETE FROM background_tasks WHERE id = %(id)s RETURNING id", {"id": task_id}
        )


async def test_a_task_deleted_while_its_stream_subscribes_is_not_found(
    settings: Settings, db: Database, member: IssuedToken, task_store: TaskStore
) -> None:
    """The connect authorizes on the task's status and version and reads its row only once
    subscribed: a task gone in between is a 404 with the error body, and the stream leaves
    nothing behind (no slot, no subscription, no stream)."""
    gateway = LiveGateway(settings)
    gateway.app[OPENING_HOOKS] = DeleteOnSubscribed(db)
    await gateway.start()
    try:
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        url = f"{gateway.url}/api/tasks/{task_id}/progress"
        async with (
            aiohttp.ClientSession(timeout=stream_timeout(10)) as session,
            session.get(url, headers=bearer(member.token)) as response,
        ):
            assert response.status == 404
            body = await response.json()
        assert body["error"]["code"] == "NOT_FOUND", body
        assert not gateway.app[STREAMS]
        assert not gateway.app[DISPATCHER].watching(progress_channel(task_id))
        assert gateway.app[STREAM_SLOTS]._total_open == 0
    finally:
        await gateway.stop()
