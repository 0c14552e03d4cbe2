"""`gateway.dispatcher.ProgressDispatcher` on its own, against real Redis (plain and sharded
pub/sub; Redis 7 serves SSUBSCRIBE outside a cluster too): one subscription per channel,
confirmed before `watch` returns, every message decoded once and offered to each stream of
its task, forged and undecodable ones dropped, and reconnection after Redis goes away; each
over RESP2, as the gateway subscribes, and RESP3, which REDIS_URL may ask for (the last test
reads the protocol of a real gateway's subscription from Redis).

The streams are real `ProgressStream`s that never run: what the dispatcher hands them stays
in their mailbox (or is recorded), which is what these tests read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.dispatcher import CONFIRM_TIMEOUT_S, ProgressDispatcher
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.keys import DISPATCHER
from praxiom_progress.gateway.opening import OpeningHooks
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import ThrowawayRedis, redis_url, wait_for
from tests.tcp_proxy import redis_gate


class Watcher(ProgressStream):
    """A stream that records what the dispatcher hands it and how often it is woken."""

    def __init__(self, task_id: UUID | None = None) -> None:
        # The access check is never reached: the stream's own task never runs here.
        super().__init__(task_id or uuid4(), b"digest", None, Settings(), StreamStats())  # type: ignore[arg-type]
        self.updates: list[Update] = []
        self.wakes = 0

    def deliver(self, update: Update, now: float, *, again: bool = False) -> int:
        self.updates.append(update)
        return super().deliver(update, now, again=again)

    def wake(self) -> None:
        self.wakes += 1
        super().wake()

    @property
    def versions(self) -> list[int]:
        return [update.version for update in self.updates]


def payload(task_id: UUID, version: int, status: str = "running") -> bytes:
    return json.dumps({"id": str(task_id), "version": version, "status": status}).encode()


class Redis:
    """Another connection to the same Redis: publishes and asks who is subscribed."""

    def __init__(self, client: aioredis.Redis, sharded: bool) -> None:
        self.client = client
        self.sharded = sharded

    async def publish(self, task_id: UUID, data: bytes) -> int:
        command = "SPUBLISH" if self.sharded else "PUBLISH"
        return int(await self.client.execute_command(command, progress_channel(task_id), data))

    async def subscribers(self, task_id: UUID) -> int:
        channel = progress_channel(task_id)
        kind = "SHARDNUMSUB" if self.sharded else "NUMSUB"
        answer = await self.client.execute_command("PUBSUB", kind, channel)
        counts = dict(zip(answer[::2], answer[1::2], strict=True))
        return int(counts.get(channel.encode(), 0))


@pytest.fixture(params=[False, True], ids=["pubsub", "sharded"])
def sharded(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def redis(sharded: bool) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url())
    yield Redis(client, sharded)
    await client.aclose()


@pytest.fixture(params=["", "?protocol=3"], ids=["resp2", "resp3"])
async def dispatcher(
    sharded: bool, request: pytest.FixtureRequest
) -> AsyncIterator[ProgressDispatcher]:
    """The gateway's subscription client: RESP2, or RESP3 where REDIS_URL asks for it."""
    client = connect_redis(redis_url() + request.param, subscriber=True)
    started = ProgressDispatcher(client, sharded=sharded)
    await started.start()
    await wait_for(lambda: asyncio.sleep(0, result=started.available), timeout_s=5)
    yield started
    await started.close()
    await client.aclose()


async def received(watcher: Watcher, count: int) -> list[int]:
    async def enough() -> bool:
        return len(watcher.updates) >= count

    await wait_for(enough, timeout_s=3, interval_s=0.01)  # milliseconds on loopback
    return watcher.versions


async def test_watch_returns_once_redis_confirms_the_subscription(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    """Nothing published after `watch` returns can be missed: Redis already counts the
    subscriber, and the very next publish reaches the stream."""
    watcher = Watcher()
    await dispatcher.watch(watcher)
    assert await redis.subscribers(watcher.task_id) == 1
    # At least: pattern subscribers (a recorder of another suite run beside) count too.
    assert await redis.publish(watcher.task_id, payload(watcher.task_id, 2)) >= 1
    assert await received(watcher, 1) == [2]
    update = watcher.take()
    assert update is not None and update.version == 2 and not update.terminal
    assert update.frame == b"id: 2\r\ndata: " + payload(watcher.task_id, 2) + b"\r\n\r\n"
    assert (dispatcher.channel_count, dispatcher.watch_count) == (1, 1)
    assert dispatcher.subscribed_channels == 1
    assert dispatcher.watching(watcher.channel)


async def test_streams_of_one_task_share_one_subscription_and_each_message(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    task_id = uuid4()
    first, second, other = Watcher(task_id), Watcher(task_id), Watcher()
    for watcher in (first, second, other):
        await dispatcher.watch(watcher)
    assert (dispatcher.channel_count, dispatcher.watch_count) == (2, 3)
    assert await redis.subscribers(task_id) == 1  # one subscription for both streams
    await redis.publish(task_id, payload(task_id, 2, "completed"))
    assert await received(first, 1) == [2] and await received(second, 1) == [2]
    assert first.updates[0] is second.updates[0]  # decoded and encoded once
    assert first.updates[0].terminal
    assert other.updates == []
    stats = dispatcher.stats
    assert (stats.messages, stats.delivered, stats.written, stats.coalesced) == (1, 2, 0, 0)


async def test_a_newer_update_replacing_an_unsent_one_is_counted_as_coalesced(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    watcher = Watcher()
    await dispatcher.watch(watcher)
    await redis.publish(watcher.task_id, payload(watcher.task_id, 2))
    await redis.publish(watcher.task_id, payload(watcher.task_id, 3))
    assert await received(watcher, 2) == [2, 3]
    assert (dispatcher.stats.delivered, dispatcher.stats.coalesced) == (2, 1)


async def test_the_last_stream_leaving_unsubscribes_and_an_early_one_does_not(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    task_id = uuid4()
    first, second, staying = Watcher(task_id), Watcher(task_id), Watcher()
    await dispatcher.watch(staying)
    await dispatcher.watch(first)
    await dispatcher.watch(second)
    dispatcher.unwatch(first)
    assert (dispatcher.channel_count, dispatcher.watch_count) == (2, 2)
    await redis.publish(task_id, payload(task_id, 2))
    assert await received(second, 1) == [2]
    assert first.updates == []
    dispatcher.unwatch(second)
    dispatcher.unwatch(second)  # twice: harmless
    assert (dispatcher.channel_count, dispatcher.watch_count) == (1, 1)

    async def unsubscribed() -> bool:  # the reader sends it, then reads Redis' answer
        return await redis.subscribers(task_id) == 0 and dispatcher.subscribed_channels == 1

    await wait_for(unsubscribed, timeout_s=5)
    assert await redis.subscribers(staying.task_id) == 1  # only that channel was dropped
    assert dispatcher.stats.connections == 1  # by an UNSUBSCRIBE, not a reconnect
    await redis.publish(staying.task_id, payload(staying.task_id, 2))
    assert await received(staying, 1) == [2]


async def test_a_stream_returning_before_the_unsubscribe_keeps_the_subscription(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    task_id = uuid4()
    leaving, pacer = Watcher(task_id), Watcher()
    await dispatcher.watch(pacer)
    await dispatcher.watch(leaving)
    dispatcher.unwatch(leaving)
    back = Watcher(task_id)
    await dispatcher.watch(back)  # within the second: the unsubscribe is withdrawn
    dispatcher.unwatch(pacer)  # its unsubscribe goes out with those of that second

    async def flushed() -> bool:
        return await redis.subscribers(pacer.task_id) == 0

    await wait_for(flushed, timeout_s=5)
    assert await redis.subscribers(task_id) == 1
    await redis.publish(task_id, payload(task_id, 2))
    assert await received(back, 1) == [2]


@pytest.mark.parametrize(
    ("data", "undecodable", "mismatched"),
    [
        (b"not json", 1, 0),
        (b'{"id": "\xff"}', 1, 0),
        (b"[]", 1, 0),
        (b'{"version": 2, "status": "running"}', 1, 0),
        (b'{"id": "x"}', 0, 1),  # the id is checked first: not this channel's task
    ],
    ids=["not-json", "not-utf-8", "not-an-object", "no-id", "another-id"],
)
async def test_a_message_that_is_not_this_task_s_payload_is_counted_and_dropped(
    dispatcher: ProgressDispatcher, redis: Redis, data: bytes, undecodable: int, mismatched: int
) -> None:
    watcher = Watcher()
    await dispatcher.watch(watcher)
    await redis.publish(watcher.task_id, data)
    await redis.publish(watcher.task_id, payload(watcher.task_id, 3))
    assert await received(watcher, 1) == [3]
    stats = dispatcher.stats
    assert (stats.messages, stats.delivered) == (2, 1)
    assert (stats.undecodable, stats.mismatched) == (undecodable, mismatched)


@pytest.mark.parametrize("field", ["version", "status"])
async def test_a_payload_missing_a_field_is_undecodable(
    dispatcher: ProgressDispatcher, redis: Redis, field: str
) -> None:
    watcher = Watcher()
    await dispatcher.watch(watcher)
    broken = json.loads(payload(watcher.task_id, 2))
    del broken[field]
    await redis.publish(watcher.task_id, json.dumps(broken).encode())
    await redis.publish(watcher.task_id, payload(watcher.task_id, 3))
    assert await received(watcher, 1) == [3]
    assert (dispatcher.stats.undecodable, dispatcher.stats.mismatched) == (1, 0)


async def test_a_message_for_another_task_is_dropped_as_forged(
    dispatcher: ProgressDispatcher, redis: Redis
) -> None:
    watcher = Watcher()
    await dispatcher.watch(watcher)
    await redis.publish(watcher.task_id, payload(uuid4(), 9, "completed"))
    await redis.publish(watcher.task_id, payload(watcher.task_id, 3))
    assert await received(watcher, 1) == [3]
    assert (dispatcher.stats.mismatched, dispatcher.stats.undecodable) == (1, 0)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_every_terminal_status_makes_a_terminal_update(
    dispatcher: ProgressDispatcher, redis: Redis, status: str
) -> None:
    watcher = Watcher()
    await dispatcher.watch(watcher)
    await redis.publish(watcher.task_id, payload(watcher.task_id, 2, "pending"))
    await redis.publish(watcher.task_id, payload(watcher.task_id, 3, status))
    await received(watcher, 2)
    assert [u.terminal for u in watcher.updates] == [False, True]


class Stuck(OpeningHooks):
    """Holds `watch` at its wait for the confirmation until the test cancels it."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.channels: list[str] = []

    async def confirming(self, channel: str) -> None:
        self.channels.append(channel)
        self.reached.set()
        await asyncio.Event().wait()


async def test_a_watch_cancelled_while_confirming_leaves_nothing_behind(
    sharded: bool, redis: Redis
) -> None:
    """The client left while its subscription was being confirmed: the caller will never
    unwatch, so `watch` does it itself (and the reader unsubscribes)."""
    client = connect_redis(redis_url())
    stuck = Stuck()
    dispatcher = ProgressDispatcher(client, sharded=sharded, hooks=stuck)
    await dispatcher.start()
    try:
        watcher = Watcher()
        watching = asyncio.create_task(dispatcher.watch(watcher))
        await stuck.reached.wait()
        assert stuck.channels == [watcher.channel]
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        assert (dispatcher.channel_count, dispatcher.watch_count) == (0, 0)

        async def unsubscribed() -> bool:
            return await redis.subscribers(watcher.task_id) == 0

        await wait_for(unsubscribed, timeout_s=5)
    finally:
        await dispatcher.close()
        await client.aclose()


async def test_redis_going_away_and_returning(
    sharded: bool, throwaway_redis: ThrowawayRedis
) -> None:
    """Streams are woken when the subscription is lost (they poll) and again when it is back,
    every watched channel subscribed again, a stream that arrived meanwhile included."""
    client = connect_redis(throwaway_redis.url)
    dispatcher = ProgressDispatcher(client, sharded=sharded, max_backoff_s=0.2)
    lost: list[bool] = []
    dispatcher._on_lost = lambda: lost.append(True)
    await dispatcher.start()
    other = Redis(connect_redis(throwaway_redis.url), sharded)
    try:
        early = Watcher()
        await dispatcher.watch(early)
        assert dispatcher.stats.connections == 1
        throwaway_redis.stop()
        await wait_for(lambda: asyncio.sleep(0, result=not dispatcher.available))
        assert lost and early.wakes >= 1
        assert dispatcher.available_for(early) is False
        late = Watcher()
        async with asyncio.timeout(1):  # Redis is down: no waiting for a confirmation
            await dispatcher.watch(late)
        wakes = early.wakes
        throwaway_redis.start()
        await wait_for(lambda: asyncio.sleep(0, result=dispatcher.available))
        assert early.wakes > wakes  # woken again: back to pub/sub
        assert dispatcher.stats.connections == 2
        for watcher in (early, late):
            assert await other.subscribers(watcher.task_id) == 1
            await other.publish(watcher.task_id, payload(watcher.task_id, 5))
            assert await received(watcher, 1) == [5]
    finally:
        await dispatcher.close()
        await client.aclose()
        await other.client.aclose()


async def test_a_dispatcher_that_never_started_has_nothing() -> None:
    client = connect_redis(redis_url())
    fresh = ProgressDispatcher(client)
    assert (fresh.channel_count, fresh.watch_count, fresh.subscribed_channels) == (0, 0, 0)
    assert not fresh.available and fresh.stats.connections == 0
    await client.aclose()


async def test_a_channel_handed_over_to_another_dispatcher(
    dispatcher: ProgressDispatcher, redis: Redis, sharded: bool
) -> None:
    """What a cluster does when a channel's slot moves to another shard: the old dispatcher
    lets go of the channel and its streams, the new one subscribes it and wakes them (each
    re-reads its row), and carries their updates from then on."""
    client = connect_redis(redis_url())
    other = ProgressDispatcher(client, sharded=sharded)
    await other.start()
    try:
        task_id = uuid4()
        first, second, staying = Watcher(task_id), Watcher(task_id), Watcher()
        await dispatcher.watch(staying)  # its slot did not move
        await dispatcher.watch(first)
        await dispatcher.watch(second)
        moved = dispatcher.release(first.channel)
        assert moved == {first, second}
        assert (dispatcher.channel_count, dispatcher.watch_count) == (1, 1)
        wakes = (first.wakes, second.wakes)
        other.adopt(first.channel, moved)
        assert (first.wakes, second.wakes) == (wakes[0] + 1, wakes[1] + 1)
        assert (other.channel_count, other.watch_count) == (1, 2)

        async def moved_over() -> bool:
            return (other.subscribed_channels, dispatcher.subscribed_channels) == (1, 1)

        await wait_for(moved_over, timeout_s=5)
        assert await redis.subscribers(task_id) == 1
        assert await redis.subscribers(staying.task_id) == 1
        assert dispatcher.stats.connections == 1  # by an UNSUBSCRIBE, not a reconnect
        await redis.publish(task_id, payload(task_id, 4))
        assert await received(first, 1) == [4] and await received(second, 1) == [4]
        assert (other.stats.delivered, dispatcher.stats.delivered) == (2, 0)
    finally:
        await other.close()
        await client.aclose()


async def test_releasing_a_channel_nobody_watches_gives_nothing(
    dispatcher: ProgressDispatcher,
) -> None:
    assert dispatcher.release(progress_channel(uuid4())) == set()
    assert dispatcher.channel_count == 0


async def test_a_subscription_redis_does_not_confirm_in_time_is_given_up_waiting_for(
    sharded: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis (here: a proxy holding the SUBSCRIBE back) does not answer within
    CONFIRM_TIMEOUT_S: `watch` returns all the same and says so, and the stream is served
    once the answer comes."""
    proxy = redis_gate(redis_url())  # the embedded Redis too, when REDIS_URL is unset
    await proxy.start()
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0")
    dispatcher = ProgressDispatcher(client, sharded=sharded)
    await dispatcher.start()
    direct = connect_redis(redis_url())
    try:
        await wait_for(lambda: asyncio.sleep(0, result=dispatcher.available))
        watcher = Watcher()
        proxy.open.clear()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
            await dispatcher.watch(watcher)
        assert time.monotonic() - started >= CONFIRM_TIMEOUT_S
        (record,) = [r for r in caplog.records if r.name == "gateway.dispatcher"]
        assert record.getMessage() == (
            f"Redis did not confirm a subscription within {CONFIRM_TIMEOUT_S:g}s"
        )
        assert record.action == "subscribe_unconfirmed"  # type: ignore[attr-defined]
        proxy.open.set()
        other = Redis(direct, sharded)

        async def subscribed() -> bool:
            return await other.subscribers(watcher.task_id) == 1

        await wait_for(subscribed)
        await other.publish(watcher.task_id, payload(watcher.task_id, 2))
        assert await received(watcher, 1) == [2]
    finally:
        proxy.open.set()
        await dispatcher.close()
        await client.aclose()
        await direct.aclose()
        await proxy.cut()


async def test_close_stops_the_reader_and_lets_go_of_its_connection(
    sharded: bool, throwaway_redis: ThrowawayRedis
) -> None:
    def readers() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "progress-dispatcher"]

    admin = connect_redis(throwaway_redis.url)
    client = connect_redis(throwaway_redis.url)
    dispatcher = ProgressDispatcher(client, sharded=sharded)
    try:
        before = len(await admin.client_list())
        await dispatcher.start()
        await dispatcher.watch(Watcher())
        assert len(readers()) == 1
        assert len(await admin.client_list()) == before + 1  # the subscription's connection
        await dispatcher.close()
        assert readers() == []

        async def let_go() -> bool:
            return len(await admin.client_list()) == before

        await wait_for(let_go, timeout_s=5)
    finally:
        await dispatcher.close()  # again, harmless; a failed assert must not leave a reader
        await client.aclose()
        await admin.aclose()


async def test_a_dispatcher_started_while_redis_is_down_connects_when_it_comes(
    sharded: bool, throwaway_redis: ThrowawayRedis
) -> None:
    throwaway_redis.stop()
    client = connect_redis(throwaway_redis.url)
    dispatcher = ProgressDispatcher(client, sharded=sharded, max_backoff_s=0.2)
    try:
        await dispatcher.start()  # gives up waiting after CONFIRM_TIMEOUT_S: nothing there
        assert not dispatcher.available
        throwaway_redis.start()
        await wait_for(lambda: asyncio.sleep(0, result=dispatcher.available))
        assert dispatcher.stats.connections == 1
    finally:
        await dispatcher.close()
        await client.aclose()


class Noting(OpeningHooks):
    def __init__(self) -> None:
        self.channels: list[str] = []

    async def confirming(self, channel: str) -> None:
        self.channels.append(channel)


async def test_a_second_stream_arriving_mid_subscribe_waits_for_the_same_confirmation(
    sharded: bool,
) -> None:
    """Its channel's subscribe is on its way (held at a proxy): the second stream sends none
    of its own, but must not return before Redis has confirmed the first one either."""
    proxy = redis_gate(redis_url())  # the embedded Redis too, when REDIS_URL is unset
    await proxy.start()
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0")
    hooks = Noting()
    dispatcher = ProgressDispatcher(client, sharded=sharded, hooks=hooks)
    direct = Redis(connect_redis(redis_url()), sharded)
    try:
        await dispatcher.start()
        await wait_for(lambda: asyncio.sleep(0, result=dispatcher.available))
        task_id = uuid4()
        first, second = Watcher(task_id), Watcher(task_id)
        proxy.open.clear()
        watching = [asyncio.create_task(dispatcher.watch(first))]
        await wait_for(lambda: asyncio.sleep(0, result=len(hooks.channels) == 1))
        watching.append(asyncio.create_task(dispatcher.watch(second)))
        await wait_for(lambda: asyncio.sleep(0, result=len(hooks.channels) == 2))
        assert hooks.channels == [first.channel, first.channel]
        assert not any(w.done() for w in watching)
        proxy.open.set()
        async with asyncio.timeout(5):
            await asyncio.gather(*watching)
        assert await direct.subscribers(task_id) == 1
        await direct.publish(task_id, payload(task_id, 2))
        assert await received(first, 1) == [2] and await received(second, 1) == [2]
    finally:
        proxy.open.set()
        await dispatcher.close()
        await client.aclose()
        await direct.client.aclose()
        await proxy.cut()


# -- a message for more streams than a chunk (gateway.fanout) -------------------------------


@pytest.fixture
async def chunked() -> AsyncIterator[ProgressDispatcher]:
    """Hands each message to at most 2 streams per turn of the loop; never started: the
    tests offer what Redis would have delivered."""
    client = connect_redis(redis_url())
    yield ProgressDispatcher(client, chunk=2)
    await client.aclose()


async def watching(dispatcher: ProgressDispatcher, task_id: UUID, count: int) -> list[Watcher]:
    watchers = [Watcher(task_id) for _ in range(count)]
    for watcher in watchers:
        await dispatcher.watch(watcher)
    return watchers


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_message_for_more_streams_than_a_chunk_reaches_the_rest_on_later_turns(
    chunked: ProgressDispatcher,
) -> None:
    task_id, other_id = uuid4(), uuid4()
    watchers = await watching(chunked, task_id, 5)
    other = Watcher(other_id)
    await chunked.watch(other)
    channel = progress_channel(task_id)
    chunked.offer(channel, payload(task_id, 2))
    chunked.offer(channel, payload(task_id, 3, "completed"))
    chunked.offer(progress_channel(other_id), payload(other_id, 4))
    assert chunked.stats.delivered == 2  # the first chunk only; the rest wait their turn
    assert other.updates == []  # behind them, though its task has one stream
    await turns()
    assert [w.versions for w in watchers] == [[2, 3]] * 5  # every one in order
    assert all(w.updates[-1].terminal for w in watchers)
    assert other.versions == [4]
    assert chunked.stats.delivered == 11


async def test_a_stream_that_leaves_between_chunks_gets_nothing_more(
    chunked: ProgressDispatcher,
) -> None:
    task_id = uuid4()
    watchers = await watching(chunked, task_id, 4)
    chunked.offer(progress_channel(task_id), payload(task_id, 2))
    waiting = [w for w in watchers if not w.updates]
    assert len(waiting) == 2
    gone = [waiting[0], next(w for w in watchers if w.updates)]
    for watcher in gone:
        chunked.unwatch(watcher)
    # The channel now has as many streams as a chunk: still, nothing overtakes the queue.
    chunked.offer(progress_channel(task_id), payload(task_id, 3))
    await turns()
    assert waiting[0].updates == []
    assert waiting[1].versions == [2, 3]
    assert [w.versions for w in watchers if w not in gone] == [[2, 3]] * 2
    assert chunked.stats.delivered == 5


async def test_the_reader_reads_no_further_while_a_fan_out_is_under_way() -> None:
    """A backlog stays in Redis, not in the dispatcher's queue: two messages published
    together are read one after the other, each once the previous reached every stream."""
    client, publisher = connect_redis(redis_url()), connect_redis(redis_url())
    started = ProgressDispatcher(client, chunk=1)
    await started.start()
    try:
        task_id = uuid4()
        watchers = await watching(started, task_id, 20)
        pipe = publisher.pipeline(transaction=False)
        for version in (2, 3):
            pipe.publish(progress_channel(task_id), payload(task_id, version))
        await pipe.execute()
        most = 0
        deadline = time.monotonic() + 5
        while any(len(w.updates) < 2 for w in watchers) and time.monotonic() < deadline:
            await asyncio.sleep(0)
            most = max(most, started.queued_messages)
        assert [w.versions for w in watchers] == [[2, 3]] * 20
        assert most == 1
    finally:
        await started.close()
        await client.aclose()
        await publisher.aclose()


@pytest.mark.parametrize(("query", "resp"), [("", "2"), ("?protocol=3", "3")])
async def test_the_gateway_s_subscription_speaks_resp2_unless_its_redis_url_asks(
    aiohttp_client: Any, settings: Settings, throwaway_redis: ThrowawayRedis, query: str,
    resp: str,
) -> None:  # fmt: skip
    """RESP3 pushes cost every message redis-py's formatted debug line (connect_redis)."""
    url = throwaway_redis.url + query
    api = await aiohttp_client(create_app(settings.replace(redis_url=url)))
    await wait_for(lambda: asyncio.sleep(0, api.app[DISPATCHER].available), timeout_s=5)
    watcher = Watcher()
    await api.app[DISPATCHER].watch(watcher)
    admin = connect_redis(throwaway_redis.url)
    try:
        subscribed = [c for c in await admin.client_list() if c["sub"] != "0"]
    finally:
        await admin.aclose()
    assert [c["resp"] for c in subscribed] == [resp]
    api.app[DISPATCHER].unwatch(watcher)
