"""Which primary serves each hash slot of a Redis Cluster (REDIS_CLUSTER=1).

Both processes route by it: the runner's publisher sends each channel's SPUBLISH to the
shard that owns its slot (taskstate.shards), the gateway subscribes each channel there
(gateway.cluster). The map is read with CLUSTER SLOTS from any node that answers: REDIS_URL
may name several seeds, and once read, every node the map names is a seed too, so one dead
node never stops a process from finding the others.

The first read makes the cluster client whole (slot map and command table together), so
nothing that later goes through it meets a half-initialised client (issue 19: a spawn as a
gateway's first request failed on a missing command table); later reads refresh the map only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import MovedError, RedisClusterException, RedisError

from praxiom_progress.taskstate.settings import redis_seed_urls

log = logging.getLogger("taskstate.slotmap")

#: A refresh asked for sooner than this after the last read (successful or not) answers from
#: that read: a storm of failing publishes costs the cluster two CLUSTER SLOTS a second at most.
REFRESH_MIN_S = 0.5


def node_url(url: str, host: str, port: int) -> str:
    """`url` with its host and port swapped for one node's (credentials and TLS kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc))


class SlotMap:
    """The cluster client's slot map, read on demand. `url` (a seed's) gives each node's
    connections their credentials and TLS."""

    def __init__(self, cluster: RedisCluster, url: str) -> None:
        self.cluster = cluster
        self._url = redis_seed_urls(url)[0]
        self._whole = False  # the client has been initialised once, command table included
        self._read_at: float | None = None  # when the last read ended (monotonic)
        self._last_ok = False
        self.reads = 0  # successful reads, so a caller can tell the map changed under it

    @property
    def ready(self) -> bool:
        """A map has been read: routing works (it may be stale; a refresh corrects it)."""
        return self._whole

    @property
    def tried(self) -> bool:
        """A read has been tried, whatever came of it."""
        return self._read_at is not None

    async def read(self) -> bool:
        """Read the slot map from any node that answers; False (logged) while none does."""
        try:
            if self._whole:
                await self.cluster.nodes_manager.initialize()
            else:
                await self.cluster.initialize()
                self._whole = True
        except (RedisClusterException, RedisError, OSError) as exc:
            log.warning(
                "cannot read the cluster's slot map: %s", exc, extra={"action": "slot_map_failed"}
            )
            self._read_at = time.monotonic()
            self._last_ok = False
            return False
        self._read_at = time.monotonic()
        self._last_ok = True
        self.reads += 1
        return True

    async def refresh(self) -> bool:
        """`read`, unless the last read ended less than REFRESH_MIN_S ago: then its result."""
        if self._read_at is not None and time.monotonic() - self._read_at < REFRESH_MIN_S:
            return self._last_ok
        return await self.read()

    def owner(self, channel: str) -> ClusterNode | None:
        """The primary serving `channel`'s slot; None before a map is read or while no node
        serves the slot."""
        if not self._whole:
            return None
        try:
            nodes = self.cluster.nodes_manager.slots_cache.get(self.cluster.keyslot(channel))
        except (RedisClusterException, RedisError):
            return None
        return nodes[0] if nodes else None

    async def moved(self, error: MovedError) -> None:
        """A node answered MOVED: note the slot's new owner now, ahead of the next read."""
        with contextlib.suppress(KeyError, RedisClusterException, RedisError):
            await self.cluster.nodes_manager.move_slot(error)

    def primaries(self) -> list[ClusterNode]:
        return self.cluster.get_primaries() if self._whole else []

    def serves(self, name: str) -> bool:
        """Whether node `name` ("host:port") is a primary in the map."""
        return any(node.name == name for node in self.primaries())

    def node_url(self, node: ClusterNode) -> str:
        return node_url(self._url, node.host, int(node.port))
