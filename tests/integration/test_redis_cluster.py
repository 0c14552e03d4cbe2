"""REDIS_CLUSTER=1 against a local three-node Redis Cluster: runners SPUBLISH, the gateway holds
one sharded subscription per node, channels spread over the shards, and every stream still
ends on its task's terminal payload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.cluster import ClusterDispatcher, node_url
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.keys import DISPATCHER, STREAM_STATS
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis_cluster
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.slotmap import SlotMap
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, RunnerProcess, bearer, spawn, wait_for
from tests.redis_cluster import LocalRedisCluster
from tests.sse_client import events, stream_timeout


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def dispatcher(redis_cluster: LocalRedisCluster) -> AsyncIterator[ClusterDispatcher]:
    client = connect_redis_cluster(redis_cluster.url)
    dispatcher = ClusterDispatcher(SlotMap(client, redis_cluster.url))
    await dispatcher.start()
    yield dispatcher
    await dispatcher.close()
    await client.aclose()


async def shard_subscribers(cluster: LocalRedisCluster, channel: str) -> dict[int, int]:
    """SSUBSCRIBE subscribers of `channel` on each node, as the nodes themselves count them."""
    counts = {}
    for port in cluster.ports:
        node = aioredis.Redis(port=port)
        try:
            [(_, count)] = await node.pubsub_shardnumsub(channel)
            counts[port] = int(count)
        finally:
            await node.aclose()
    return counts


def running_payload(task_id: uuid.UUID, version: int) -> dict[str, Any]:
    row = {"id": task_id, "status": "running", "task_type": "validation_kit", "progress_pct": 50,
           "phase": "running", "message": "", "started_at": None, "completed_at": None,
           "heartbeat_at": None, "error": None, "result_data": {}, "version": version}  # fmt: skip
    return task_payload(Task.from_row(row))


def stream_of(task_id: uuid.UUID) -> ProgressStream:
    """A stream as the dispatcher sees it; its loop never runs here, so every update it is
    handed waits in its mailbox."""
    return ProgressStream(task_id, b"", None, Settings(), StreamStats())  # no access: never read


async def next_update(stream: ProgressStream) -> Update:
    return await wait_for(lambda: asyncio.sleep(0, stream.take()), 5)


def test_node_url_keeps_credentials_and_scheme() -> None:
    assert (
        node_url("redis://:pw@10.0.0.1:7000/0", "10.0.0.2", 7001) == "redis://:pw@10.0.0.2:7001/0"
    )
    assert node_url("rediss://h:7000", "::1", 7002) == "rediss://[::1]:7002"


async def test_each_channel_is_subscribed_on_the_shard_that_owns_its_slot(
    dispatcher: ClusterDispatcher, redis_cluster: LocalRedisCluster
) -> None:
    assert len(dispatcher.shards) == 3 and dispatcher.available
    task_ids = [uuid.uuid4() for _ in range(30)]
    streams = [stream_of(task_id) for task_id in task_ids]
    for stream in streams:
        await dispatcher.watch(stream)
    per_shard = {name: shard.subscribed_channels for name, shard in dispatcher.shards.items()}
    assert sum(per_shard.values()) == 30
    assert sum(1 for count in per_shard.values() if count) == 3, per_shard  # spread out

    for task_id in task_ids[:3]:
        counts = await shard_subscribers(redis_cluster, progress_channel(task_id))
        assert sorted(counts.values()) == [0, 0, 1], counts  # on one node only

    dispatcher_client = connect_redis_cluster(redis_cluster.url)
    publisher = ProgressPublisher(SlotMap(dispatcher_client, redis_cluster.url))
    try:
        for task_id in task_ids:
            assert await publisher.publish(running_payload(task_id, 7))
    finally:
        await publisher.aclose()
        await dispatcher_client.aclose()
    assert [(await next_update(stream)).version for stream in streams] == [7] * len(streams)

    for stream in streams:
        dispatcher.unwatch(stream)
    assert dispatcher.watch_count == 0 and dispatcher.channel_count == 0

    async def all_unsubscribed() -> bool:
        return dispatcher.subscribed_channels == 0

    await wait_for(all_unsubscribed, 5)  # the readers send SUNSUBSCRIBE within a second
    counts = await shard_subscribers(redis_cluster, progress_channel(task_ids[0]))
    assert set(counts.values()) == {0}


async def test_plain_publish_does_not_reach_a_sharded_subscription(
    dispatcher: ClusterDispatcher, redis_cluster: LocalRedisCluster
) -> None:
    """Why the publisher must SPUBLISH in cluster mode (and a check that this test can fail)."""
    task_id = uuid.uuid4()
    stream = stream_of(task_id)
    await dispatcher.watch(stream)
    client = connect_redis_cluster(redis_cluster.url)
    channel = progress_channel(task_id)
    try:
        await client.publish(channel, encode_payload(running_payload(task_id, 3)))
        await asyncio.sleep(0.5)
        assert stream.take() is None
        await client.spublish(channel, encode_payload(running_payload(task_id, 4)))
        assert (await next_update(stream)).version == 4
    finally:
        dispatcher.unwatch(stream)
        await client.aclose()


async def test_a_channel_follows_its_slot_to_another_node(
    dispatcher: ClusterDispatcher, redis_cluster: LocalRedisCluster
) -> None:
    """A resharding moves a slot: the old node drops the subscription (SUNSUBSCRIBE), the
    dispatcher re-reads the slot map and subscribes the channel on the slot's new owner."""
    task_id = uuid.uuid4()
    channel = progress_channel(task_id)
    stream = stream_of(task_id)
    await dispatcher.watch(stream)
    client = connect_redis_cluster(redis_cluster.url)
    try:
        await client.initialize()
        old = client.get_node_from_key(channel)
        new = next(node for node in client.get_primaries() if node.name != old.name)
        nodes = {port: aioredis.Redis(port=port, decode_responses=True)
                 for port in redis_cluster.ports}  # fmt: skip
        try:
            new_id = await nodes[int(new.port)].execute_command("CLUSTER MYID")
            slot = client.keyslot(channel)
            for node in nodes.values():  # an empty slot moves by decree
                await node.execute_command("CLUSTER SETSLOT", slot, "NODE", new_id)
        finally:
            for node in nodes.values():
                await node.aclose()

        await wait_for(lambda: asyncio.sleep(0, dispatcher.shards[new.name].watching(channel)), 10)
        shard = dispatcher.shards[new.name]
        await wait_for(lambda: asyncio.sleep(0, shard.subscribed_channels >= 1), 5)
        stream.take()
        await client.nodes_manager.initialize()
        await client.spublish(channel, encode_payload(running_payload(task_id, 9)))
        assert (await next_update(stream)).version == 9
        assert not dispatcher.shards[old.name].watching(channel)
    finally:
        dispatcher.unwatch(stream)
        await client.aclose()


async def test_the_publisher_follows_a_slot_that_moved_under_it(
    redis_cluster: LocalRedisCluster,
) -> None:
    """The publisher routes by the slot map it last read; a node that no longer owns the slot
    answers MOVED, and the publisher follows the redirect at once (issue 19)."""
    task_id = uuid.uuid4()
    channel = progress_channel(task_id)
    client = connect_redis_cluster(redis_cluster.url)
    publisher = ProgressPublisher(SlotMap(client, redis_cluster.url))
    try:
        assert await publisher.publish(running_payload(task_id, 1))  # reads the map
        old = client.get_node_from_key(channel)
        new = next(node for node in client.get_primaries() if node.name != old.name)
        nodes = {port: aioredis.Redis(port=port, decode_responses=True)
                 for port in redis_cluster.ports}  # fmt: skip
        try:
            new_id = await nodes[int(new.port)].execute_command("CLUSTER MYID")
            for node in nodes.values():  # an empty slot moves by decree
                await node.execute_command(
                    "CLUSTER SETSLOT", client.keyslot(channel), "NODE", new_id
                )
            pubsub = nodes[int(new.port)].pubsub()
            await pubsub.ssubscribe(channel)
            await pubsub.get_message(timeout=1.0)  # the confirmation
            assert await publisher.publish(running_payload(task_id, 2))
            message = await pubsub.get_message(timeout=2.0)
            assert message is not None and '"version":2' in message["data"]
            await pubsub.aclose()
        finally:
            for node in nodes.values():
                await node.aclose()
        assert publisher.by_shard[new.name].published == 1
        assert publisher.by_shard[old.name].failed == 0
    finally:
        await publisher.aclose()
        await client.aclose()


async def test_runners_and_a_gateway_in_cluster_mode_carry_every_stream_to_its_end(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    redis_cluster: LocalRedisCluster,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    cluster_settings = settings.replace(redis_url=redis_cluster.url, redis_cluster=True)
    gateway = LiveGateway(cluster_settings)
    await gateway.start()
    try:
        runner_processes(REDIS_URL=redis_cluster.url, REDIS_CLUSTER="1")
        task_ids = [
            await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.3)
            for _ in range(12)
        ]

        async def watch(session: aiohttp.ClientSession, task_id: uuid.UUID) -> list[Any]:
            url = f"{gateway.url}/api/tasks/{task_id}/progress"
            async with session.get(url, headers=bearer(member.token)) as response:
                assert response.status == 200
                return [event.payload async for event in events(response)]

        async with aiohttp.ClientSession(timeout=stream_timeout(30)) as session:
            results = await asyncio.wait_for(
                asyncio.gather(*(watch(session, task_id) for task_id in task_ids)), 60
            )
        for task_id, received in zip(task_ids, results, strict=True):
            versions = [p["version"] for p in received]
            assert versions == sorted(set(versions)), "versions must strictly increase"
            assert received[-1]["status"] == "completed", received[-1]["error"]
            row = await task_store.get_task(task_id)
            assert row is not None and received[-1]["version"] == row.version
            assert len(received) >= 4, "the phases must arrive live, not only on re-reads"

        dispatcher = gateway.app[DISPATCHER]
        assert isinstance(dispatcher, ClusterDispatcher)
        delivering = [s for s in dispatcher.shards.values() if s.stats.messages > 0]
        assert len(delivering) >= 2, "channels should spread over the shards"
        assert gateway.app[STREAM_STATS].polls == 0, "no stream should have fallen back to polling"
    finally:
        await gateway.stop()


def test_cluster_mode_refuses_a_unix_socket_url(tmp_path: Path) -> None:
    from praxiom_progress.taskstate.settings import SettingsError

    with pytest.raises(SettingsError, match="REDIS_CLUSTER"):
        Settings.from_env({"REDIS_URL": f"unix://{tmp_path}/redis.sock", "REDIS_CLUSTER": "1"})
