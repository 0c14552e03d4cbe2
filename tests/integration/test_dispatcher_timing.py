"""How long the dispatcher makes a stream wait, and Redis (real, here) wait for it.

A stream waiting for its subscription's confirmation is let go at once when the wait can no
longer end well: its channel was handed to another shard, or the SUBSCRIBE could not be sent.
It must not sit out CONFIRM_TIMEOUT_S (a deploy's reconnect storm would wait it out stream by
stream), nor miss what follows. A burst of new streams is subscribed in the same moment, and
a lost Redis is retried at doubling intervals, never hammered.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.dispatcher import CONFIRM_TIMEOUT_S, ProgressDispatcher
from praxiom_progress.taskstate.publisher import connect_redis
from tests.conftest import redis_url, wait_for
from tests.integration.test_dispatcher import Watcher, payload
from tests.tcp_proxy import GatedProxy, TcpProxy, redis_target


@pytest.fixture
async def direct() -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_url())
    yield client
    await client.aclose()


@asynccontextmanager
async def running(
    url: str, make: Callable[[aioredis.Redis], ProgressDispatcher] = ProgressDispatcher
) -> AsyncIterator[ProgressDispatcher]:
    """A dispatcher on Redis at `url`, up before the test goes on, closed after it."""
    client = connect_redis(url)
    dispatcher = make(client)
    try:
        await dispatcher.start()
        await wait_for(lambda: asyncio.sleep(0, result=dispatcher.available), timeout_s=5)
        yield dispatcher
    finally:
        await dispatcher.close()
        await client.aclose()


@asynccontextmanager
async def proxied(kind: type[TcpProxy] = GatedProxy) -> AsyncIterator[TcpProxy]:
    """A proxy to the suite's Redis that the test can hold back (GatedProxy) or cut."""
    proxy = kind(*redis_target(redis_url()))
    await proxy.start()
    try:
        yield proxy
    finally:
        if isinstance(proxy, GatedProxy):
            proxy.open.set()
        await proxy.cut()


async def test_a_channel_released_while_its_subscribe_is_unconfirmed_lets_its_stream_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with proxied() as proxy, running(f"redis://127.0.0.1:{proxy.port}/0") as dispatcher:
        assert isinstance(proxy, GatedProxy)
        watcher = Watcher()
        proxy.open.clear()  # Redis does not see the SUBSCRIBE, so it never confirms
        with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
            began = time.monotonic()
            watching = asyncio.create_task(dispatcher.watch(watcher))
            await wait_for(lambda: asyncio.sleep(0, result=proxy.held_bytes > 0), timeout_s=5)
            assert not watching.done()
            assert dispatcher.release(watcher.channel) == {watcher}
            await watching
            assert time.monotonic() - began < CONFIRM_TIMEOUT_S
        assert [r for r in caplog.records if r.name == "gateway.dispatcher"] == []


class RefusingDispatcher(ProgressDispatcher):
    """Its first SUBSCRIBE fails to go out, as when the connection breaks under the write."""

    refusals = 1

    async def _send_subscribe(self, pubsub: aioredis.client.PubSub, channels: list[str]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("the write failed")
        await super()._send_subscribe(pubsub, channels)


async def test_a_subscribe_that_fails_to_go_out_lets_its_streams_go_and_is_sent_again(
    direct: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(redis_url(), RefusingDispatcher) as dispatcher:
        task_id = uuid4()
        first, second = Watcher(task_id), Watcher(task_id)
        with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
            began = time.monotonic()
            await asyncio.gather(dispatcher.watch(first), dispatcher.watch(second))
            assert time.monotonic() - began < CONFIRM_TIMEOUT_S
        assert dispatcher.subscribed_channels == 0  # let go at once, not at the retry's answer
        logged = [(r.getMessage(), getattr(r, "action", None)) for r in caplog.records]
        assert logged == [("subscribe failed: the write failed", "subscribe_failed")]

        async def delivered() -> bool:  # the reader subscribes again within its next turn
            await direct.publish(first.channel, payload(task_id, 2))
            return bool(first.updates) and bool(second.updates)

        await wait_for(delivered, timeout_s=5, interval_s=0.1)
        assert dispatcher.subscribed_channels == 1


async def test_a_burst_of_new_streams_is_subscribed_in_the_same_moment(
    direct: aioredis.Redis,
) -> None:
    """The batch waits one turn of the loop for the rest of a burst, not longer: a wait of a
    second (which a storm's every stream would pay) fails this."""
    async with running(redis_url()) as dispatcher:
        watchers = [Watcher() for _ in range(50)]
        began = time.monotonic()
        await asyncio.gather(*(dispatcher.watch(watcher) for watcher in watchers))
        assert time.monotonic() - began < 1.0  # loopback: milliseconds
        assert dispatcher.subscribed_channels == 50


async def test_losing_redis_says_why_and_retries_at_doubling_intervals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis is replaced by a server that hangs up on every connection: the reader says what
    went wrong, then tries again after 0.1 s, 0.2 s, 0.4 s, ... (never hammering a Redis that
    is coming back, never waiting longer than max_backoff_s)."""
    attempts: list[float] = []

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = time.monotonic()
        if not attempts or now - attempts[-1] > 0.05:  # redis-py retries at once by itself
            attempts.append(now)
        writer.transport.abort()

    lost: list[float] = []  # the cluster re-reads its slot map each time (gateway.cluster)

    def make(client: aioredis.Redis) -> ProgressDispatcher:
        return ProgressDispatcher(
            client, max_backoff_s=0.8, on_lost=lambda: lost.append(time.monotonic())
        )

    async with proxied(TcpProxy) as proxy, running(f"redis://127.0.0.1:{proxy.port}/0", make):
        with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
            await proxy.cut()
            server = await asyncio.start_server(hang_up, "127.0.0.1", proxy.port)
            await wait_for(lambda: asyncio.sleep(0, result=len(attempts) >= 6), timeout_s=10)
            server.close()
    assert len(lost) >= len(attempts) - 1  # each failed attempt (the last may be under way)
    (down,) = [r for r in caplog.records if getattr(r, "action", None) == "redis_down"]
    reason = down.getMessage().rpartition("returns: ")[2]
    assert reason not in ("", "None")
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts[:6])]
    lowest = [0.1, 0.2, 0.4, 0.8, 0.8]
    assert all(gap >= low - 0.01 for gap, low in zip(gaps, lowest, strict=True)), gaps
    assert all(gap < low + 0.35 for gap, low in zip(gaps, lowest, strict=True)), gaps


async def test_losing_redis_lets_a_stream_waiting_for_its_confirmation_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It will poll PostgreSQL until the subscription is back: no reason to wait longer."""

    def make(client: aioredis.Redis) -> ProgressDispatcher:
        return ProgressDispatcher(client, max_backoff_s=5)

    async with proxied() as proxy, running(f"redis://127.0.0.1:{proxy.port}/0", make) as dispatcher:
        assert isinstance(proxy, GatedProxy)
        watcher = Watcher()
        proxy.open.clear()
        with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
            began = time.monotonic()
            watching = asyncio.create_task(dispatcher.watch(watcher))
            await wait_for(lambda: asyncio.sleep(0, result=proxy.held_bytes > 0), timeout_s=5)
            await proxy.cut()
            await watching
            assert time.monotonic() - began < CONFIRM_TIMEOUT_S
        actions = [getattr(r, "action", None) for r in caplog.records]
        assert actions == ["redis_down"]  # and not "subscribe_unconfirmed"
        assert dispatcher.available_for(watcher) is False
