"""Publishing to a Redis Cluster shard by shard, so a dead primary stays its own shard's problem.

Each primary gets its own connection and its own back-off, as the gateway's subscriptions do
(gateway.cluster). A batch is split by the shard that owns each channel's slot
(taskstate.slotmap) and the shards are sent to at once, so a slow or failing one delays no
other. A shard whose connection fails is marked down: its publishes are skipped (counted per
shard, never waited on) while a recovery task, every `retry_after_s`, re-reads the slot map
and pings the node. Either a replica has taken its slots over (the shard is retired and the
next publish goes to the new primary), or the node answers again. Meanwhile the gateway's
streams on that shard poll PostgreSQL, as they do whenever Redis is down.

(issue 19: with one cluster-wide back-off, one dead primary made publishes to every healthy
shard fail or be skipped for seconds at a time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import MovedError, RedisError

from praxiom_progress.taskstate.slotmap import SlotMap

log = logging.getLogger("taskstate.publisher")

Message = tuple[str, bytes]  # (channel, encoded payload)
ConnectFn = Callable[[str], aioredis.Redis]


@dataclass
class PublishStats:
    """A publisher's counts, or one shard's share of them."""

    published: int = 0
    failed: int = 0
    skipped: int = 0


class _Shard:
    __slots__ = ("down_since", "name", "redis")

    def __init__(self, name: str, redis: aioredis.Redis) -> None:
        self.name = name
        self.redis = redis
        self.down_since: float | None = None  # loop time of the failure, while it is down

    async def send(self, messages: Sequence[Message]) -> list[object]:
        """SPUBLISH each message in one round trip: each one's reply, or its error reply."""
        pipe = self.redis.pipeline(transaction=False)
        for channel, data in messages:
            pipe.spublish(channel, data)
        return list(await pipe.execute(raise_on_error=False))


class ShardSender:
    def __init__(
        self,
        slots: SlotMap,
        stats: PublishStats,
        connect: ConnectFn,
        *,
        retry_after_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._slots = slots
        self._stats = stats  # the publisher's totals
        self._connect = connect
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._shards: dict[str, _Shard] = {}  # node name ("host:port") -> its connection
        self._tasks: set[asyncio.Task[object]] = set()  # recoveries, map reads, closes
        self._reading: asyncio.Task[object] | None = None
        self.by_shard: dict[str, PublishStats] = {}  # per node name, kept after a failover

    async def start(self) -> None:
        """Read the slot map now, so the first publish need not (a failure is retried later)."""
        if not self._slots.ready:
            await self._slots.read()

    async def send(self, messages: Sequence[Message], *, redirects: int = 1) -> int:
        """Publish each message on its slot's shard; how many a shard took."""
        if not self._slots.tried:  # never started: the first publish reads the map itself
            await self._slots.read()
        groups: dict[str, tuple[ClusterNode, list[Message]]] = {}
        for message in messages:
            node = self._slots.owner(message[0])
            if node is None:  # no map yet, or a slot nobody serves: read it again soon
                self._stats.skipped += 1
                self._read_later()
                continue
            groups.setdefault(node.name, (node, []))[1].append(message)
        if len(groups) == 1:
            [(node, group)] = groups.values()
            return await self._send_to(node, group, redirects)
        sent = await asyncio.gather(
            *(self._send_to(node, group, redirects) for node, group in groups.values())
        )
        return sum(sent)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        shards = list(self._shards.values())
        self._shards.clear()
        for shard in shards:
            with contextlib.suppress(Exception):
                await shard.redis.aclose()

    # -- one shard ---------------------------------------------------------------------------

    async def _send_to(self, node: ClusterNode, messages: list[Message], redirects: int) -> int:
        shard = self._shard(node)
        counts = self.by_shard.setdefault(shard.name, PublishStats())
        if shard.down_since is not None:
            counts.skipped += len(messages)
            self._stats.skipped += len(messages)
            return 0
        try:
            replies = await shard.send(messages)
        except (RedisError, OSError, TimeoutError) as exc:
            counts.failed += len(messages)
            self._stats.failed += len(messages)
            self._lost(shard, exc)
            return 0
        pairs = zip(messages, replies, strict=True)
        moved = [(message, reply) for message, reply in pairs if isinstance(reply, MovedError)]
        refused = sum(1 for r in replies if isinstance(r, Exception)) - len(moved)
        taken = len(messages) - len(moved) - refused
        counts.published += taken
        counts.failed += refused
        self._stats.published += taken
        self._stats.failed += refused
        if moved:  # the slot moved (a resharding, a failover): follow the redirect once
            for _, error in moved:
                await self._slots.moved(error)
            again = [message for message, _ in moved]
            if redirects > 0:
                return taken + await self.send(again, redirects=redirects - 1)
            counts.failed += len(again)
            self._stats.failed += len(again)
        return taken

    def _shard(self, node: ClusterNode) -> _Shard:
        shard = self._shards.get(node.name)
        if shard is None:
            shard = _Shard(node.name, self._connect(self._slots.node_url(node)))
            self._shards[node.name] = shard
        return shard

    def _lost(self, shard: _Shard, exc: BaseException) -> None:
        if shard.down_since is not None:  # another batch in flight failed first: recovering
            return
        shard.down_since = self._clock()
        log.warning(
            "Redis publish failed on shard %s; its channels go to PostgreSQL only until it "
            "returns or a replica takes over: %s",
            shard.name,
            exc,
            extra={"action": "publish_failed", "shard": shard.name},
        )
        self._spawn(self._recover(shard), f"publish-recovery-{shard.name}")

    async def _recover(self, shard: _Shard) -> None:
        """Until the shard answers again or no longer serves any slot."""
        since = shard.down_since or self._clock()
        while True:
            await asyncio.sleep(self._retry_after_s)
            await self._slots.refresh()
            if self._slots.ready and not self._slots.serves(shard.name):
                log.info(
                    "shard %s no longer serves any slot (failed over); publishing to its "
                    "slots' new primary",
                    shard.name,
                    extra={"action": "publish_failed_over", "shard": shard.name},
                )
                self._retire(shard)
                return
            try:
                await shard.redis.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            shard.down_since = None
            log.info(
                "shard %s is back after %.1fs; publishing resumed",
                shard.name,
                self._clock() - since,
                extra={"action": "publish_resumed", "shard": shard.name},
            )
            return

    def _retire(self, shard: _Shard) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        self._spawn(shard.redis.aclose(), f"publish-close-{shard.name}")

    def _read_later(self) -> None:
        if self._reading is None or self._reading.done():
            self._reading = self._spawn(self._slots.refresh(), "publish-slot-map")

    def _spawn(self, work: Coroutine[Any, Any, object], name: str) -> asyncio.Task[object]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
