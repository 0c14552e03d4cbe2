"""Rings the doorbell: publishes committed payloads to the task's Redis channel.

Redis holds nothing that matters, so a failed publish is counted and logged,
never raised: readers fall back to PostgreSQL. After a failure, publishes are
skipped for `retry_after_s` so a dead Redis costs no time per write, and
resume by themselves once it answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from taskstate.channels import progress_channel
from taskstate.payloads import encode_payload
from taskstate.settings import Settings

log = logging.getLogger(__name__)


def connect_redis(url: str, *, timeout_s: float = 2.0) -> aioredis.Redis:
    """A client that fails fast: no retry storm while Redis is down."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
    )


def connect_redis_cluster(url: str, *, timeout_s: float = 2.0) -> RedisCluster:
    """A cluster client (`url` names any one node) that fails fast, like `connect_redis`."""
    return RedisCluster.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
    )


def redis_client(settings: Settings) -> aioredis.Redis | RedisCluster:
    """The client REDIS_URL and REDIS_CLUSTER ask for."""
    if settings.redis_cluster:
        return connect_redis_cluster(settings.redis_url)
    return connect_redis(settings.redis_url)


@dataclass
class PublishStats:
    published: int = 0
    failed: int = 0
    skipped: int = 0


class ProgressPublisher:
    """`sharded`: SPUBLISH, which the cluster routes to the one shard that owns the channel's
    hash slot (plain PUBLISH would be broadcast to every node of a cluster)."""

    def __init__(
        self,
        redis: aioredis.Redis | RedisCluster,
        *,
        sharded: bool = False,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._sharded = sharded
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_since: float | None = None
        self._last_failure = 0.0
        self.stats = PublishStats()

    async def publish(self, payload: Mapping[str, Any]) -> bool:
        """Publish one payload; True when Redis took it."""
        now = self._clock()
        if self._down_since is not None and now - self._last_failure < self._retry_after_s:
            self.stats.skipped += 1
            return False
        try:
            channel, data = progress_channel(payload["id"]), encode_payload(payload)
            if self._sharded:
                await self._redis.spublish(channel, data)
            else:
                await self._redis.publish(channel, data)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            self.stats.failed += 1
            self._last_failure = now
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "Redis publish failed; progress goes to PostgreSQL only until it returns: %s",
                    exc,
                    extra={"action": "publish_failed"},
                )
            return False
        if self._down_since is not None:
            log.info(
                "Redis is back after %.1fs; publishing resumed",
                now - self._down_since,
                extra={"action": "publish_resumed"},
            )
            self._down_since = None
        self.stats.published += 1
        return True
