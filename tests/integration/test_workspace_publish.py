"""Every payload is also published on `praxiom:workspace_progress:{workspace_id}`, in the same
round trip as its task's channel and with the same bytes; on a Redis Cluster the workspace
channel is SPUBLISHed on the shard of its own slot, where the gateway's workspace stream hears
it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import progress_channel, workspace_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.publisher import (
    ProgressPublisher,
    connect_redis,
    connect_redis_cluster,
)
from praxiom_progress.taskstate.slotmap import SlotMap
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, fast_settings, redis_url, spawn
from tests.redis_cluster import LocalRedisCluster
from tests.sse_client import stream_timeout
from tests.tcp_proxy import redis_gate
from tests.workspace_client import WorkspaceClient


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as client:
        yield client


async def running(db: Database, task_store: TaskStore, member: IssuedToken) -> Task:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    row = await db.fetch_one(
        "UPDATE background_tasks SET message = 'Working' WHERE id = %(id)s RETURNING *",
        {"id": task_id},
    )
    assert row is not None
    return Task.from_row(row)


async def test_both_channels_get_the_same_bytes_in_one_round_trip(
    redis_client: aioredis.Redis, db: Database, task_store: TaskStore, member: IssuedToken
) -> None:
    task = await running(db, task_store, member)
    pubsub = redis_client.pubsub()
    channels = [progress_channel(task.id), workspace_channel(member.workspace_id)]
    await pubsub.subscribe(*channels)
    publisher = ProgressPublisher(redis_client)
    writes: list[int] = []  # commands per write to Redis
    pool = redis_client.connection_pool
    checkout = pool.get_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        connection = await checkout(*args, **kwargs)
        send = connection.send_packed_command

        async def send_counted(command: Any, *a: Any, **k: Any) -> None:
            writes.append(bytes(command).count(b"PUBLISH"))
            await send(command, *a, **k)

        connection.send_packed_command = send_counted
        return connection

    pool.get_connection = counted  # type: ignore[method-assign]
    try:
        assert await publisher.publish_tasks([task]) == 2
        got: dict[str, bytes] = {}
        async with asyncio.timeout(5):
            while len(got) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    got[message["channel"].decode()] = message["data"]
    finally:
        del pool.get_connection
        await pubsub.aclose()
    assert writes == [2]  # one write for both
    expected = encode_payload(task_payload(task)).encode()
    assert got == {channel: expected for channel in channels}
    assert publisher.stats.published == 2


async def test_a_publish_redis_stops_answering_gives_up_after_its_timeout_then_resumes(
    redis_client: aioredis.Redis, db: Database, task_store: TaskStore, member: IssuedToken
) -> None:
    """The runner's client has no timeout per reply (one timer per reply costs a pipeline of
    20 a fifth of its CPU): the publisher bounds the round trip itself, and publishes again
    once Redis answers."""
    task = await running(db, task_store, member)
    proxy = redis_gate(redis_url())  # the embedded Redis too, when REDIS_URL is unset
    await proxy.start()
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", reply_timeout=False)
    publisher = ProgressPublisher(client, timeout_s=0.3, retry_after_s=0.0)
    pubsub = redis_client.pubsub()
    try:
        assert await publisher.publish_tasks([task]) == 2
        proxy.open.clear()  # Redis gets nothing more, so answers nothing
        started = time.monotonic()
        assert await publisher.publish_tasks([task]) == 0
        assert 0.3 <= time.monotonic() - started < 2.0
        assert publisher.stats.failed == 2
        proxy.open.set()
        await pubsub.subscribe(progress_channel(task.id))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        assert await publisher.publish_tasks([task]) == 2  # on a new connection
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert message["data"] == encode_payload(task_payload(task)).encode()
    finally:
        await pubsub.aclose()
        await client.aclose()
        await proxy.cut()


async def test_on_a_redis_cluster_the_workspace_channel_has_its_own_shard_and_stream(
    redis_cluster: LocalRedisCluster,
    clean_database: str,
    db: Database,
    task_store: TaskStore,
    member: IssuedToken,
    session: aiohttp.ClientSession,
) -> None:
    gateway = LiveGateway(
        fast_settings(clean_database, redis_cluster=True, redis_url=redis_cluster.url)
    )
    await gateway.start()
    client = connect_redis_cluster(redis_cluster.url)
    publisher = ProgressPublisher(SlotMap(client, redis_cluster.url))
    try:
        task = await running(db, task_store, member)
        ws = member.workspace_id
        async with WorkspaceClient(session, gateway.url, ws, member.token) as stream:
            await stream.wait_for(lambda c: len(c.events) == 1)
            counts = []
            for port in redis_cluster.ports:
                node = aioredis.Redis(port=port)
                try:
                    [(_, count)] = await node.pubsub_shardnumsub(workspace_channel(ws))
                    counts.append(count)
                finally:
                    await node.aclose()
            assert sorted(counts) == [0, 0, 1]  # SSUBSCRIBEd on its slot's node alone
            changed = await db.fetch_one(
                "UPDATE background_tasks SET message = 'Sharded' WHERE id = %(id)s RETURNING *",
                {"id": task.id},
            )
            assert changed is not None
            assert await publisher.publish_tasks([Task.from_row(changed)]) == 2
            await stream.wait_for(lambda c: c.newest()[str(task.id)]["message"] == "Sharded")
    finally:
        await publisher.aclose()
        await client.aclose()
        await gateway.stop()
