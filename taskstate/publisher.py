"""Rings the doorbell: publishes committed payloads to the task's Redis channel.

Redis holds nothing that matters, so a failed publish is counted and logged,
never raised: readers fall back to PostgreSQL. After a failure, publishes are
skipped for `retry_after_s` so a dead Redis costs no time per write, and
resume by themselves once it answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from taskstate.channels import progress_channel
from taskstate.models import Task
from taskstate.payloads import encode_payload, task_payload
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

    async def publish_tasks(self, tasks: Sequence[Task]) -> int:
        """Persist, then publish: every writer hands its committed tasks here, and nowhere else
        is a task's payload published. How many Redis took (all or none)."""
        if not tasks:
            return 0
        return await self.publish_many([task_payload(task) for task in tasks])

    async def publish(self, payload: Mapping[str, Any]) -> bool:
        """Publish one payload; True when Redis took it."""
        return await self.publish_many([payload]) == 1

    async def publish_many(self, payloads: Sequence[Mapping[str, Any]]) -> int:
        """Publish payloads in one round trip; how many Redis took (all or none)."""
        now = self._clock()
        if self._down_since is not None and now - self._last_failure < self._retry_after_s:
            self.stats.skipped += len(payloads)
            return 0
        try:
            await self._send([(progress_channel(p["id"]), encode_payload(p)) for p in payloads])
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            self.stats.failed += len(payloads)
            self._last_failure = now
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "Redis publish failed; progress goes to PostgreSQL only until it returns: %s",
                    exc,
                    extra={"action": "publish_failed"},
                )
            return 0
        if self._down_since is not None:
            log.info(
                "Redis is back after %.1fs; publishing resumed",
                now - self._down_since,
                extra={"action": "publish_resumed"},
            )
            self._down_since = None
        self.stats.published += len(payloads)
        return len(payloads)

    async def _send(self, messages: list[tuple[str, str]]) -> None:
        if len(messages) == 1:
            channel, data = messages[0]
            if self._sharded:
                await self._redis.spublish(channel, data)
            else:
                await self._redis.publish(channel, data)
            return
        pipe = self._redis.pipeline(transaction=False)
        for channel, data in messages:
            if self._sharded:
                pipe.spublish(channel, data)
            else:
                pipe.publish(channel, data)
        await pipe.execute()
