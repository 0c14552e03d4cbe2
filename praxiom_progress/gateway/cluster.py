"""Sharded pub/sub over a Redis Cluster (REDIS_CLUSTER=1).

Runners SPUBLISH each task's channel, which the cluster delivers only on the
shard that owns the channel's hash slot, so pub/sub traffic spreads over the
shards instead of being broadcast to every node as plain PUBLISH is. The
gateway therefore holds one sharded subscription per primary node (a
ProgressDispatcher with `sharded=True`) and files each channel under the node
that serves its slot. When a shard's connection fails, the slot map is read
again; channels whose slot moved (a failover, a resharding) go to their new
owner and their streams re-read the row there, so nothing stays stale.

Health is per shard (issue 19): the subscription is up while every channel's shard is
connected, so a dead primary makes only its own streams poll, and once a replica has taken
its slots over (or it returns) the gateway is whole again; a shard that serves no slot and
holds no channel any more is dropped, not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from praxiom_progress.gateway.dispatcher import DELIVER_CHUNK, ProgressDispatcher
from praxiom_progress.gateway.dispatching import DispatcherStats
from praxiom_progress.gateway.lag import LagHistogram
from praxiom_progress.gateway.stream import Watcher
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.slotmap import SlotMap, node_url

__all__ = ["ClusterDispatcher", "node_url"]

log = logging.getLogger("gateway.cluster")

#: Pause between reads of the slot map while the cluster cannot give one, or while a shard
#: holding channels is down (a replica may be taking its slots over).
REFRESH_RETRY_S = 1.0
#: Slot-map reads that may still show a dropped channel on its old node (the nodes learn of a
#: move one by one) before it is simply subscribed there again.
DROPPED_PATIENCE = 5


class ClusterDispatcher:
    def __init__(
        self, slots: SlotMap, *, lag: LagHistogram | None = None, chunk: int = DELIVER_CHUNK
    ) -> None:
        self._slots = slots
        self._lag = lag
        self._chunk = chunk  # SSE_DELIVER_CHUNK, for each shard's dispatcher
        self._shards: dict[str, ProgressDispatcher] = {}  # node name ("host:port") -> shard
        self._homes: dict[str, ProgressDispatcher] = {}  # channel -> the shard holding it
        self._homeless: dict[str, set[Watcher]] = {}  # channels of slots no known node serves
        self._dropped: dict[str, int] = {}  # channels a node unsubscribed -> slot-map reads since
        self._refresh_wanted = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None

    # -- what tests and metrics read ---------------------------------------------------------

    @property
    def shards(self) -> dict[str, ProgressDispatcher]:
        return dict(self._shards)

    @property
    def available(self) -> bool:
        """Up when every slot with watched channels is served: each channel's shard is
        connected. A shard that holds no channel does not count, down or not."""
        if not self._slots.ready or self._homeless:
            return False
        return all(shard.available for shard in self._shards.values() if shard.channel_count)

    @property
    def shards_up(self) -> dict[str, bool]:
        """Each shard (node name) serving slots or holding channels: is it connected?"""
        return {name: shard.available for name, shard in self._shards.items()}

    @property
    def stats(self) -> DispatcherStats:
        total = DispatcherStats()
        for shard in self._shards.values():
            for field in dataclasses.fields(DispatcherStats):
                name = field.name
                setattr(total, name, getattr(total, name) + getattr(shard.stats, name))
        return total

    @property
    def channel_count(self) -> int:
        return sum(s.channel_count for s in self._shards.values()) + len(self._homeless)

    @property
    def watch_count(self) -> int:
        homeless = sum(len(w) for w in self._homeless.values())
        return sum(s.watch_count for s in self._shards.values()) + homeless

    @property
    def subscribed_channels(self) -> int:
        return sum(s.subscribed_channels for s in self._shards.values())

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if not await self._read_slots():
            self._refresh_wanted.set()
        await asyncio.gather(*(shard.start() for shard in self._shards.values()))
        self._refresher = asyncio.create_task(self._refresh_forever(), name="cluster-slots")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        shards = list(self._shards.values())
        self._shards.clear()
        for shard in shards:
            await shard.close()
            await shard.redis.aclose()

    # -- watching ----------------------------------------------------------------------------

    async def watch(self, stream: Watcher) -> None:
        channel = stream.channel
        shard = self._homes.get(channel) or self._owner(channel)
        if shard is None:  # no slot map yet: the stream polls until one comes
            self._homeless.setdefault(channel, set()).add(stream)
            return
        self._homes[channel] = shard
        await shard.watch(stream)

    def unwatch(self, stream: Watcher) -> None:
        channel = stream.channel
        shard = self._homes.get(channel)
        if shard is not None:
            shard.unwatch(stream)
            if not shard.watching(channel):
                del self._homes[channel]
            return
        homeless = self._homeless.get(channel)
        if homeless is not None:
            homeless.discard(stream)
            if not homeless:
                del self._homeless[channel]

    def available_for(self, stream: Watcher) -> bool:
        shard = self._homes.get(stream.channel)
        return shard is not None and shard.available

    def watching(self, channel: str) -> bool:
        return channel in self._homes or channel in self._homeless

    def offer(self, channel: str, data: bytes) -> None:
        """A payload that did not come through Redis (gateway.written); a homeless channel's
        streams poll, so they need nothing."""
        shard = self._homes.get(channel)
        if shard is not None:
            shard.offer(channel, data)

    # -- the slot map ------------------------------------------------------------------------

    def _owner(self, channel: str) -> ProgressDispatcher | None:
        node = self._slots.owner(channel)
        if node is None:
            return None
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._new_shard(node.name, self._slots.node_url(node))
        return shard

    def _new_shard(self, name: str, url: str) -> ProgressDispatcher:
        redis = connect_redis(url, subscriber=True)
        shard = ProgressDispatcher(
            redis,
            sharded=True,
            on_lost=self._refresh_wanted.set,
            on_dropped=self._dropped_by_node,
            lag=self._lag,
            chunk=self._chunk,
        )
        self._shards[name] = shard
        if self._refresher is not None:  # started: a shard found later starts at once
            shard.begin()
        return shard

    def _dropped_by_node(self, channel: str) -> None:
        self._dropped.setdefault(channel, 0)
        self._refresh_wanted.set()

    async def _read_slots(self) -> bool:
        """Read the slot map (again); False while the cluster cannot give one."""
        if not await self._slots.read():
            return False
        for node in self._slots.primaries():
            if node.name not in self._shards:
                self._new_shard(node.name, self._slots.node_url(node))
        self._rehome()
        await self._retire_idle()
        return True

    async def _retire_idle(self) -> None:
        """Close the shards of nodes that serve no slot and hold no channel (a failed-over
        primary, dead or back as a replica): nothing waits for them."""
        primaries = {node.name for node in self._slots.primaries()}
        for name, shard in list(self._shards.items()):
            if name not in primaries and not shard.channel_count:
                log.info(
                    "shard %s serves no slot any more; dropped",
                    name,
                    extra={"action": "shard_dropped", "shard": name},
                )
                await shard.close()
                await shard.redis.aclose()
                if self._shards.get(name) is shard:
                    del self._shards[name]

    def _stranded(self) -> bool:
        """Channels wait for a shard: their slot is unserved, or their shard is down."""
        return bool(self._homeless) or any(
            not shard.available and shard.channel_count for shard in self._shards.values()
        )

    def _rehome(self) -> None:
        """File every channel under the shard that serves its slot now."""
        for channel, streams in list(self._homeless.items()):
            shard = self._owner(channel)
            if shard is not None:
                del self._homeless[channel]
                self._homes[channel] = shard
                shard.adopt(channel, streams)
        for channel, shard in list(self._homes.items()):
            owner = self._owner(channel)
            if owner is not None and owner is not shard:
                log.info("channel %s moved to another shard", channel)
                self._homes[channel] = owner
                owner.adopt(channel, shard.release(channel))
                self._dropped.pop(channel, None)
        for channel, reads in list(self._dropped.items()):
            shard = self._homes.get(channel)
            if shard is None:  # nobody watches it any more
                del self._dropped[channel]
            elif reads + 1 >= DROPPED_PATIENCE:  # the map still says here: subscribe again
                del self._dropped[channel]
                shard.adopt(channel, shard.release(channel))
            else:
                self._dropped[channel] = reads + 1
        if self._dropped:
            self._refresh_wanted.set()  # read the map again shortly: not every node knows yet

    async def _refresh_forever(self) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            if not await self._read_slots() or self._stranded():
                self._refresh_wanted.set()  # again shortly: a failover may be under way
            await asyncio.sleep(REFRESH_RETRY_S)  # at most one read of the slot map a second
