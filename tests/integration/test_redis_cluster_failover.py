"""Issue 19 on a real Redis Cluster of three primaries and three replicas (started here, with a
short cluster-node-timeout): a killed primary costs only its own shard, health tells the truth
after the failover, a dead seed node does not stop a gateway or a runner, and a spawn works as
a gateway's first request.

`test_a_dead_primary_costs_only_its_own_shard` also prints what the failure cost, per shard
(run it with `-s`); docs/scaling.md quotes it. CLUSTER_NODE_TIMEOUT_MS sets the nodes'
cluster-node-timeout for such a measurement (default 1000; Redis's own default is 15000).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from redis.crc import key_slot

from praxiom_progress.gateway.cluster import ClusterDispatcher
from praxiom_progress.gateway.keys import DISPATCHER
from praxiom_progress.gateway.metrics import METRICS
from praxiom_progress.gateway.sse import STREAM_STATS
from praxiom_progress.runner.daemon import connected_runner
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer, spawn, wait_for
from tests.redis_cluster import NODE_TIMEOUT_MS, LocalRedisCluster
from tests.sse_client import events, stream_timeout

#: The nodes' cluster-node-timeout here; a measurement for docs/scaling.md may raise it.
CLUSTER_NODE_TIMEOUT_MS = int(os.environ.get("CLUSTER_NODE_TIMEOUT_MS", NODE_TIMEOUT_MS))
#: Each ticking task reports this often; lateness is measured against each report's time.
TICK_S = 0.2
#: Reports per ticking task: enough to outlast a second of live progress, the failover (two
#: to three node timeouts) and three seconds after it.
STEPS = int((1.0 + 3 * CLUSTER_NODE_TIMEOUT_MS / 1000 + 3.0) / TICK_S)
#: The longest a failover may take here.
FAILOVER_WITHIN_S = 5 * CLUSTER_NODE_TIMEOUT_MS / 1000 + 10
#: The most an event on a healthy shard may be late (the issue's bar).
LIVE_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    local = LocalRedisCluster(
        tmp_path_factory.mktemp("redis-cluster-ha"),
        replicas=1,
        node_timeout_ms=CLUSTER_NODE_TIMEOUT_MS,
    )
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def whole_cluster(cluster: LocalRedisCluster) -> Iterator[LocalRedisCluster]:
    """The module's cluster; whatever a test killed is back (and in sync) after it."""
    yield cluster
    cluster.heal()


def cluster_settings(settings: Settings, url: str, **changes: Any) -> Settings:
    return settings.replace(
        redis_url=url,
        redis_cluster=True,
        runner_task_modules=("praxiom_progress.runner.builtin", "tests.task_modules"),
        # Every report must arrive: the throttle would coalesce 0.2 s ticks, by design.
        runner_progress_min_interval_s=0.0,
        **changes,
    )


def slot_of(task_id: uuid.UUID) -> int:
    return key_slot(progress_channel(task_id).encode())


def primaries(cluster: LocalRedisCluster) -> list[int]:
    return sorted(port for port, role in cluster.roles().items() if role == "master")


async def spawn_on_every_shard(
    cluster: LocalRedisCluster, task_store: TaskStore, workspace_id: uuid.UUID, per_shard: int
) -> dict[uuid.UUID, int]:
    """Ticking tasks (pending) until every shard owns `per_shard` of their channels: each
    task's id -> the port of the primary serving its channel."""
    via = primaries(cluster)[0]
    shards: dict[uuid.UUID, int] = {}
    while min([list(shards.values()).count(p) for p in primaries(cluster)]) < per_shard:
        task_id = await spawn(task_store, workspace_id, "ticking", steps=STEPS, interval=TICK_S)
        shards[task_id] = cluster.primary_of(slot_of(task_id), via=via)
    return shards


@dataclass
class Followed:
    """One stream's events, each with the wall-clock time it arrived."""

    task_id: uuid.UUID
    steps: int = STEPS
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def reports(self) -> list[tuple[int, float, float]]:
        """Each progress report received: its step, when it was made, when it arrived."""
        received = []
        for arrived, payload in self.events:
            if payload["phase"] == "ticking":
                step, _, made = payload["message"].partition("@")
                received.append((int(step), float(made), arrived))
        return received

    def lateness(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """For each report made between `since` and `until`: how long after it was made the
        subscriber had it or a newer state (a state skipped counts as late as the next one that
        arrived; when it was made is interpolated between the reports either side)."""
        reports = self.reports()
        made = {step: when for step, when, _ in reports}
        known = sorted(made)
        late = []
        for step in range(known[0], known[-1] + 1) if known else ():
            before = max(s for s in known if s <= step)
            after = min(s for s in known if s >= step)
            when = made[before] + (made[after] - made[before]) * (
                (step - before) / (after - before) if after > before else 0
            )
            if since <= when < until:
                learned = min(arrived for s, _, arrived in reports if s >= step)
                late.append(learned - when)
        return late

    def missing(self) -> list[int]:
        """The reports (steps) never delivered."""
        return sorted(set(range(1, self.steps + 1)) - {step for step, _, _ in self.reports()})

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1][1]["status"] == "completed"


async def follow(
    session: aiohttp.ClientSession, gateway: LiveGateway, token: str, followed: Followed
) -> None:
    url = f"{gateway.url}/api/tasks/{followed.task_id}/progress"
    async with session.get(url, headers=bearer(token)) as response:
        assert response.status == 200
        async for event in events(response):
            followed.events.append((time.time(), event.payload))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runner]:
    """A runner wired exactly as `praxiom-progress runner` wires it, claiming until exit."""
    async with connected_runner(settings) as runner:
        claiming = asyncio.create_task(runner.run(), name="test-runner")
        try:
            yield runner
        finally:
            runner.stop(force=True)
            await asyncio.wait_for(claiming, 15)


def sample(gateway: LiveGateway, name: str, **labels: str) -> float | None:
    return gateway.app[METRICS].registry.get_sample_value(name, labels)


async def readiness(gateway: LiveGateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/readyz") as response:
            return dict(await response.json())


async def test_a_dead_primary_costs_only_its_own_shard(
    settings: Settings, member: IssuedToken, task_store: TaskStore, whole_cluster: LocalRedisCluster
) -> None:
    """Kill a primary while tasks stream on every shard: on the other shards every state
    arrives, none more than a second late; the dead shard's streams poll, then go live again
    on the replica that took over."""
    cluster = whole_cluster
    shards = await spawn_on_every_shard(cluster, task_store, member.workspace_id, per_shard=2)
    seed, victim = primaries(cluster)[0], primaries(cluster)[1]
    world = cluster_settings(
        settings, cluster.seeds(seed), runner_concurrency=len(shards) + 2
    )  # one seed, alive throughout: what is measured here is the dead shard, not the seeds
    gateway = LiveGateway(world)
    await gateway.start()
    followed = [Followed(task_id) for task_id in shards]
    try:
        async with aiohttp.ClientSession(timeout=stream_timeout(30)) as session:
            streams = [asyncio.create_task(follow(session, gateway, member.token, f))
                       for f in followed]  # fmt: skip
            await wait_for(lambda: asyncio.sleep(0, gateway.app[STREAM_STATS].open == len(shards)))
            async with running(world) as runner:
                await asyncio.sleep(1.0)  # a second of live progress everywhere
                killed_at = time.time()
                cluster.kill(victim)
                slot = next(slot_of(t) for t, port in shards.items() if port == victim)
                await asyncio.to_thread(cluster.wait_for_failover, victim, slot, FAILOVER_WITHIN_S)
                failed_over_at = time.time()
                await asyncio.wait_for(asyncio.gather(*streams), STEPS * TICK_S + 30)
            publisher = runner.publisher
    finally:
        await gateway.stop()

    dead = [f for f in followed if shards[f.task_id] == victim]
    healthy = [f for f in followed if shards[f.task_id] != victim]
    report_costs(dead, healthy, killed_at, failed_over_at)
    assert all(f.ended for f in followed), "every stream ends on its task's completion"
    for f in healthy:
        assert f.missing() == [], f"states lost on a healthy shard: {f.missing()}"
        assert max(f.lateness()) <= LIVE_S, f"late on a healthy shard: {max(f.lateness()):.2f}s"
    for f in dead:  # live again once a replica has taken over and the gateway re-homed
        again = f.lateness(since=failed_over_at + 1.5)
        assert again and max(again) <= LIVE_S, f"the dead shard's stream after failover: {again}"
    victim_name = f"127.0.0.1:{victim}"
    assert publisher.by_shard[victim_name].failed >= 1
    for name, counts in publisher.by_shard.items():
        if name != victim_name:
            assert counts.failed == counts.skipped == 0, (name, counts)


def report_costs(
    dead: list[Followed], healthy: list[Followed], killed_at: float, failed_over_at: float
) -> None:
    """What the failure cost, per shard: printed for docs/scaling.md (run with -s)."""
    live_again = min(
        (arrived for f in dead for _, made, arrived in f.reports() if made > failed_over_at),
        default=float("nan"),
    )

    def line(label: str, group: list[Followed], since: float, until: float) -> str:
        late = sorted(x for f in group for x in f.lateness(since, until))
        if not late:
            return f"  {label}: no reports"
        return (
            f"  {label}: {len(late)} reports, late by median {statistics.median(late):.2f}s, "
            f"max {late[-1]:.2f}s, {sum(x > LIVE_S for x in late)} over {LIVE_S:g}s"
        )

    print(
        f"\ncluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS} ms, SSE_POLL_INTERVAL 3 s; after the "
        f"kill: failover {failed_over_at - killed_at:.1f}s, the failed shard's streams live "
        f"again {live_again - killed_at:.1f}s"
    )
    print(line("failed shard, kill to failover", dead, killed_at, failed_over_at))
    print(line("failed shard, after failover", dead, failed_over_at, float("inf")))
    print(line("healthy shards, kill to failover", healthy, killed_at, failed_over_at))
    print(line("healthy shards, whole run", healthy, 0.0, float("inf")))
    for label, group in (("failed shard", dead), ("healthy shards", healthy)):
        lost = sum(len(f.missing()) for f in group)
        made = sum(f.steps for f in group)
        print(f"  {label}: {lost} of {made} states never delivered (skipped while polling)")


async def test_health_tells_the_truth_before_and_after_a_failover(
    settings: Settings, member: IssuedToken, task_store: TaskStore, whole_cluster: LocalRedisCluster
) -> None:
    """While a primary is down only its streams poll and its shard shows down; once a replica
    has taken over, the gateway is ready again within a second of re-homing its channels, the
    dead node gone from the shards it reports."""
    cluster = whole_cluster
    shards = await spawn_on_every_shard(cluster, task_store, member.workspace_id, per_shard=1)
    seed, victim = primaries(cluster)[0], primaries(cluster)[2]
    gateway = LiveGateway(cluster_settings(settings, cluster.seeds(seed)))
    await gateway.start()
    try:
        async with aiohttp.ClientSession(timeout=stream_timeout(30)) as session:
            streams = [asyncio.create_task(follow(session, gateway, member.token, Followed(t)))
                       for t in shards]  # fmt: skip
            try:
                await health_through_a_failover(gateway, cluster, shards, victim)
            finally:
                for stream in streams:
                    stream.cancel()
                await asyncio.gather(*streams, return_exceptions=True)
    finally:
        await gateway.stop()


async def health_through_a_failover(
    gateway: LiveGateway, cluster: LocalRedisCluster, shards: dict[uuid.UUID, int], victim: int
) -> None:
    dispatcher = gateway.app[DISPATCHER]
    assert isinstance(dispatcher, ClusterDispatcher)
    await wait_for(lambda: asyncio.sleep(0, gateway.app[STREAM_STATS].open == len(shards)))
    assert (await readiness(gateway))["status"] == "ready"
    victim_name = f"127.0.0.1:{victim}"
    on_victim = sum(port == victim for port in shards.values())

    cluster.kill(victim)

    async def polling() -> float | None:
        return sample(gateway, "praxiom_gateway_streams_polling")

    await wait_for(polling, 10)  # the dead shard's streams poll ...
    await asyncio.sleep(0.5)
    assert await polling() == on_victim, "... and only they do"
    assert sample(gateway, "praxiom_gateway_redis_shard_up", shard=victim_name) == 0
    live = [p for p in primaries(cluster) if p != victim]
    for port in live:
        assert sample(gateway, "praxiom_gateway_redis_shard_up", shard=f"127.0.0.1:{port}") == 1
    assert (await readiness(gateway))["redis"]["subscription"] == "down"

    slot = next(slot_of(t) for t, port in shards.items() if port == victim)
    successor = await asyncio.to_thread(cluster.wait_for_failover, victim, slot, FAILOVER_WITHIN_S)
    await wait_for(lambda: asyncio.sleep(0, victim_name not in dispatcher.shards_up), 10)
    rehomed_at = time.monotonic()  # the dead node's shard is dropped once its channels moved

    async def ready() -> bool:
        return (await readiness(gateway))["status"] == "ready"

    await wait_for(ready, 5)
    assert time.monotonic() - rehomed_at <= 1.0, "ready within a second of re-homing"
    body = await readiness(gateway)
    assert body["redis"] == {
        "status": "up",
        "subscription": "up",
        "shards": {"up": 3, "down": 0},
        "latency_ms": body["redis"]["latency_ms"],
    }
    assert sample(gateway, "praxiom_gateway_redis_subscription_up") == 1
    assert sample(gateway, "praxiom_gateway_streams_polling") == 0
    assert sample(gateway, "praxiom_gateway_redis_shard_up", shard=victim_name) is None
    for port in [*live, successor]:
        assert sample(gateway, "praxiom_gateway_redis_shard_up", shard=f"127.0.0.1:{port}") == 1


async def test_a_gateway_and_a_runner_start_with_the_first_seed_node_down(
    settings: Settings, member: IssuedToken, task_store: TaskStore, whole_cluster: LocalRedisCluster
) -> None:
    """REDIS_URL names several nodes, the first of them dead: any one that answers gives the
    slot map, so progress is live from the start and nothing polls."""
    cluster = whole_cluster
    dead = min(port for port, role in cluster.roles().items() if role == "slave")
    cluster.kill(dead)  # one node down, five up
    world = cluster_settings(settings, cluster.seeds(dead, *primaries(cluster)))
    gateway = LiveGateway(world)
    await gateway.start()
    try:
        assert (await readiness(gateway))["status"] == "ready"
        task_id = await spawn(task_store, member.workspace_id, "ticking", steps=5, interval=TICK_S)
        followed = Followed(task_id, steps=5)
        async with aiohttp.ClientSession(timeout=stream_timeout(30)) as session:
            stream = asyncio.create_task(follow(session, gateway, member.token, followed))
            await wait_for(lambda: asyncio.sleep(0, gateway.app[STREAM_STATS].open == 1))
            async with running(world) as runner:
                await asyncio.wait_for(stream, 30)
                published = runner.publisher.stats
        assert followed.ended and followed.missing() == []
        assert max(followed.lateness()) <= LIVE_S
        assert gateway.app[STREAM_STATS].polls == 0, "no stream polled"
        assert published.failed == published.skipped == 0 and published.published >= 7
    finally:
        await gateway.stop()


async def test_a_spawn_is_a_gateways_first_request(
    settings: Settings, member: IssuedToken, whole_cluster: LocalRedisCluster
) -> None:
    """The cluster client is whole before the gateway serves: a spawn before anything else
    has used it is accepted, and the readiness check's ping that follows finds it up (a 500
    once, the client being only partly initialised)."""
    seed = whole_cluster.seeds(primaries(whole_cluster)[0])  # one node, as before issue 19
    gateway = LiveGateway(cluster_settings(settings, seed))
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{gateway.url}/api/tasks/spawn",
                json={"task_type": "validation_kit", "params": {}},
                headers=bearer(member.token),
            ) as response:
                assert response.status == 202, await response.text()
            async with session.get(f"{gateway.url}/readyz") as response:
                readiness = await response.json()
        assert response.status == 200, readiness
        assert readiness["redis"]["status"] == "up", readiness
    finally:
        await gateway.stop()
