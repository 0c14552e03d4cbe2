"""One Redis subscription per gateway process, shared by every stream.

redis-py gives each PubSub its own connection (the pool stops at 100), so a
connection per stream cannot scale. The dispatcher owns a single PubSub:
a channel is subscribed when its first watcher arrives and unsubscribed when
its last one leaves. Each message is decoded once and offered to every
watcher of its task, which keeps only the newest state (every payload is a
full state, so skipping intermediate ones is safe, and the terminal one has
the highest version, so it is never dropped).

The dispatcher also owns reconnection: when Redis goes away it tells every
watcher (they fall back to polling PostgreSQL), reconnects with backoff,
subscribes every live channel again, and tells them it is back.

With `sharded=True` it speaks sharded pub/sub (SSUBSCRIBE) to one node of a
Redis Cluster; gateway.cluster runs one such dispatcher per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.lag import LagHistogram, LagSampler
from taskstate.channels import progress_channel
from taskstate.status import TERMINAL_STATUSES

log = logging.getLogger("gateway.dispatcher")

#: How long `get_message` blocks; also the longest delay before an unsubscribe is sent.
READ_TIMEOUT_S = 1.0
#: The longest wait between reconnect attempts while Redis is down (each shard's, in cluster
#: mode). Streams must be back on pub/sub within 5 s of Redis returning (issue 6): the wait,
#: plus connecting and resubscribing every live channel, has to fit in that.
RECONNECT_MAX_S = 2.0
#: How long a new stream waits for Redis to confirm its subscription.
CONFIRM_TIMEOUT_S = 2.0

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Update:
    version: int
    frame: bytes  # the whole SSE event, encoded once however many streams send it
    terminal: bool
    received: float = 0.0  # monotonic arrival time of a lag-sampled message; 0.0 otherwise
    chunk: bytes = b""  # `frame` as one HTTP/1.1 chunk, for writing straight to a socket

    @classmethod
    def of(
        cls,
        version: int,
        data: bytes,
        terminal: bool,
        retry_ms: int | None = None,
        received: float = 0.0,
    ) -> Update:
        """The event for one payload (as published: compact JSON, so one `data:` line)."""
        lines = b"".join(b"data: %s\r\n" % line for line in _LINE_BREAK.split(data))
        retry = b"retry: %d\r\n" % retry_ms if retry_ms is not None else b""
        frame = b"id: %d\r\n%s%s\r\n" % (version, lines, retry)
        return cls(version, frame, terminal, received, b"%x\r\n%s\r\n" % (len(frame), frame))


class Watch:
    """One stream's end of the dispatcher: what it has sent, and how to reach it.

    While its stream is live (`transport` set), an update that its socket can take at once
    is written here, straight from the dispatcher, in the same pass as every other watcher
    of the task: no task is woken and nothing is queued. Anything else goes to the mailbox
    (`latest`, the newest state only: every payload is a full state) and wakes the stream's
    task: a terminal state (the stream ends after it), and updates for a socket that is
    still sending earlier ones (a slow client, which then skips intermediate states).
    """

    __slots__ = ("_again", "_wake", "_woken", "channel", "last_activity", "latest",
                 "sent_version", "task_id", "transport")  # fmt: skip

    def __init__(self, task_id: UUID) -> None:
        self.task_id = task_id
        self.channel = progress_channel(task_id)
        self.latest: Update | None = None
        self.sent_version = 0
        self.last_activity = 0.0  # loop time of the last update offered (idle detection)
        self.transport: asyncio.Transport | None = None  # set while direct writes are safe
        self._wake: asyncio.Future[bool] | None = None
        self._woken = False
        self._again = False  # the mailbox holds an idle re-read, due even at the same version

    def offer(self, update: Update, now: float, *, again: bool = False) -> int:
        """Deliver `update` if it is newer than what the stream has (or, with `again`, the
        same state re-read while idle). 1: written to the socket; 0: left in the mailbox
        or stale; -1: it replaced an update the stream had not sent yet (coalesced)."""
        newest = self.latest.version if self.latest is not None else self.sent_version
        if update.version < newest or (update.version == newest and not again):
            return 0
        self.last_activity = now
        transport = self.transport
        if (
            transport is not None
            and self.latest is None
            and not update.terminal
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            transport.write(update.chunk)
            self.sent_version = update.version
            return 1
        coalesced = self.latest is not None
        self.latest, self._again = update, again
        self.poke()
        return -1 if coalesced else 0

    def poke(self) -> None:
        """Wake the stream's task (an update for it, Redis state changed, or shutdown)."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(True)
        else:
            self._woken = True  # nobody waits now: the next wait returns at once

    def take(self) -> Update | None:
        """The mailbox's update, unless the stream has sent that state meanwhile."""
        update, self.latest = self.latest, None
        if update is None or update.version > self.sent_version:
            return update
        return update if self._again and update.version == self.sent_version else None

    def wait(self, timeout_s: float | None) -> asyncio.Future[bool]:
        """Await it for a poke: True, or False when `timeout_s` passed quietly. A plain future,
        not a coroutine, so a waiting stream holds no extra frame and no waiter objects."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[bool] = loop.create_future()
        if self._woken:
            self._woken = False
            wake.set_result(True)
            return wake
        self._wake = wake
        if timeout_s is not None:
            timer = loop.call_later(timeout_s, _expire, wake)
            wake.add_done_callback(lambda _: timer.cancel())
        wake.add_done_callback(self._waited)
        return wake

    def _waited(self, wake: asyncio.Future[bool]) -> None:
        if self._wake is wake:
            self._wake = None
        if not wake.cancelled() and wake.result():
            self._woken = False  # this poke is consumed


def _expire(wake: asyncio.Future[bool]) -> None:
    if not wake.done():
        wake.set_result(False)


@dataclass
class DispatcherStats:
    messages: int = 0
    delivered: int = 0
    written: int = 0  # of those, written straight to the socket by the dispatcher
    undecodable: int = 0
    coalesced: int = 0  # updates that replaced one a slow stream had not sent yet
    connections: int = 0  # times the subscription came up


class Dispatcher(Protocol):
    """A single-Redis dispatcher or a cluster's (gateway.cluster), as streams and tests see it."""

    @property
    def stats(self) -> DispatcherStats: ...

    @property
    def available(self) -> bool: ...

    @property
    def channel_count(self) -> int: ...

    @property
    def watch_count(self) -> int: ...

    @property
    def subscribed_channels(self) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def watch(self, task_id: UUID) -> Watch: ...

    def unwatch(self, watch: Watch) -> None: ...

    def available_for(self, watch: Watch) -> bool: ...


class ProgressDispatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        sharded: bool = False,
        max_backoff_s: float = RECONNECT_MAX_S,
        on_lost: Callable[[], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
        lag: LagHistogram | None = None,
    ) -> None:
        self._redis = redis
        self._lag = lag  # where direct writes record the sampled publish-to-send lag
        self._loop_time = time.monotonic  # the event loop's clock, without a lookup per call
        self._sharded = sharded
        # The cluster re-reads its slot map when the connection fails, or when the node drops
        # a watched channel (its slot moved to another node).
        self._on_lost = on_lost
        self._on_dropped = on_dropped
        self._max_backoff_s = max_backoff_s
        self._watches: dict[str, set[Watch]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._to_unsubscribe: set[str] = set()
        self._to_subscribe: set[str] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.available = False
        self.stats = DispatcherStats()
        self.lag_sampler = LagSampler()  # see gateway.lag

    # -- counters the tests and metrics read -----------------------------------------------

    @property
    def channel_count(self) -> int:
        return len(self._watches)

    @property
    def watch_count(self) -> int:
        return sum(len(watches) for watches in self._watches.values())

    @property
    def subscribed_channels(self) -> int:
        if self._pubsub is None:
            return 0
        return len(self._pubsub.shard_channels if self._sharded else self._pubsub.channels)

    def available_for(self, watch: Watch) -> bool:
        return self.available

    def watching(self, channel: str) -> bool:
        return channel in self._watches

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def begin(self) -> None:
        """Start reading without waiting for Redis."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="progress-dispatcher")

    async def start(self) -> None:
        self.begin()
        # Give Redis a moment, so the first streams can use pub/sub if it is there.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await self._started.wait()

    async def close(self) -> None:
        if self._reader is not None:
            while not self._reader.done():  # cancel until done: see runner.worker
                self._reader.cancel()
                await asyncio.wait([self._reader], timeout=1.0)
        await self._drop_pubsub()

    # -- watching ----------------------------------------------------------------------------

    async def watch(self, task_id: UUID) -> Watch:
        """Register a watcher; when it is the channel's first, wait until Redis confirms the
        subscription, so that nothing published after this returns can be missed."""
        watch = Watch(task_id)
        watches = self._watches.setdefault(watch.channel, set())
        watches.add(watch)
        self._to_unsubscribe.discard(watch.channel)
        try:
            if len(watches) == 1 and self.available and self._pubsub is not None:
                await self._subscribe(self._pubsub, watch.channel)
            elif watch.channel in self._confirmations:
                await self._await_confirmation(watch.channel)  # a subscribe is under way
        except BaseException:
            self.unwatch(watch)  # cancelled (the client left): the caller never gets it
            raise
        return watch

    def unwatch(self, watch: Watch) -> None:
        watches = self._watches.get(watch.channel)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self._watches[watch.channel]
            self._to_unsubscribe.add(watch.channel)  # sent by the reader, within a second

    def release(self, channel: str) -> set[Watch]:
        """Hand a channel's watchers over to another shard (its hash slot moved)."""
        watches = self._watches.pop(channel, set())
        self._to_unsubscribe.add(channel)
        future = self._confirmations.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)
        return watches

    def adopt(self, channel: str, watches: Iterable[Watch]) -> None:
        """Take over watchers from another shard; they re-read the row once subscribed here."""
        self._watches.setdefault(channel, set()).update(watches)
        self._to_unsubscribe.discard(channel)
        self._to_subscribe.add(channel)
        for watch in self._watches[channel]:
            watch.poke()

    async def _subscribe(self, pubsub: aioredis.client.PubSub, channel: str) -> None:
        future = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = future
        try:
            await self._send_subscribe(pubsub, [channel])
        except (RedisError, OSError) as exc:
            self._confirmations.pop(channel, None)
            self._to_subscribe.add(channel)  # the reader tries again (or reconnects) shortly
            log.warning("subscribe failed: %s", exc, extra={"action": "subscribe_failed"})
            return
        await self._await_confirmation(channel)

    async def _await_confirmation(self, channel: str) -> None:
        future = self._confirmations.get(channel)
        if future is None:
            return
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await asyncio.shield(future)
        except TimeoutError:
            log.warning(
                "Redis did not confirm a subscription within %gs",
                CONFIRM_TIMEOUT_S,
                extra={"action": "subscribe_unconfirmed"},
            )

    # -- the reader --------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        delay = 0.0
        while True:
            try:
                pubsub = await self._connect()
                delay = 0.0
                while True:
                    await self._flush_pending(pubsub)
                    message = await pubsub.get_message(timeout=READ_TIMEOUT_S)
                    if message is not None:
                        self._handle(message)
            except (RedisError, OSError) as exc:
                self._set_available(False, reason=str(exc))
                if self._on_lost is not None:
                    self._on_lost()
                await self._drop_pubsub()
                self._started.set()
                delay = min(self._max_backoff_s, delay * 2 or 0.1)
                await asyncio.sleep(delay)

    async def _connect(self) -> aioredis.client.PubSub:
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        await pubsub.connect()
        self._to_unsubscribe.clear()
        self._to_subscribe.clear()
        subscribed: set[str] = set()
        # Streams that arrive meanwhile are not subscribed by `watch` (Redis is not
        # available yet), so loop until every watched channel is confirmed.
        while missing := [channel for channel in self._watches if channel not in subscribed]:
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in missing]
            self._confirmations.update(zip(missing, futures, strict=True))
            await self._send_subscribe(pubsub, missing)
            while not all(future.done() for future in futures):
                message = await pubsub.get_message(timeout=READ_TIMEOUT_S)
                if message is not None:
                    self._handle(message)
            subscribed.update(missing)
        self._set_available(True)
        self._started.set()
        return pubsub

    async def _flush_pending(self, pubsub: aioredis.client.PubSub) -> None:
        """Send what streams left to the reader: unsubscribes, and subscribes that failed."""
        if self._to_unsubscribe:
            gone = [c for c in self._to_unsubscribe if c not in self._watches]
            self._to_unsubscribe.clear()
            if gone:
                await self._send_unsubscribe(pubsub, gone)
        if self._to_subscribe:
            retry = [c for c in self._to_subscribe if c in self._watches]
            self._to_subscribe.clear()
            if retry:
                await self._send_subscribe(pubsub, retry)

    async def _send_subscribe(self, pubsub: aioredis.client.PubSub, channels: list[str]) -> None:
        if not self._sharded:
            await pubsub.subscribe(*channels)
            return
        for channel in channels:  # one SSUBSCRIBE may not span hash slots (CROSSSLOT)
            await pubsub.ssubscribe(channel)

    async def _send_unsubscribe(self, pubsub: aioredis.client.PubSub, channels: list[str]) -> None:
        if not self._sharded:
            await pubsub.unsubscribe(*channels)
            return
        for channel in channels:
            await pubsub.sunsubscribe(channel)

    def _handle(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = _text(message["channel"])
        if kind in ("subscribe", "ssubscribe"):
            future = self._confirmations.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind == "sunsubscribe" and channel in self._watches and self._on_dropped is not None:
            self._on_dropped(channel)  # the node gave the channel's slot away
            return
        if kind not in ("message", "smessage"):
            return
        self.stats.messages += 1
        watches = self._watches.get(channel)
        if not watches:
            return
        data = message["data"]
        if not isinstance(data, bytes):
            data = str(data).encode()
        try:
            decoded = json.loads(data)
            update = Update.of(
                int(decoded["version"]),
                data,
                decoded["status"] in TERMINAL_STATUSES,
                received=self.lag_sampler.stamp(),
            )
        except (ValueError, KeyError, TypeError):
            self.stats.undecodable += 1
            log.warning("ignored an undecodable message on %s", channel)
            return
        now = self._loop_time()
        written = coalesced = 0
        for watch in watches:  # one pass, the frame encoded once, no task woken per watcher
            outcome = watch.offer(update, now)
            if outcome > 0:
                written += 1
            elif outcome < 0:
                coalesced += 1
        stats = self.stats
        stats.delivered += len(watches)
        stats.written += written
        stats.coalesced += coalesced
        if written and update.received and self._lag is not None:
            self._lag.record_since(update.received)  # the last socket written: the largest lag

    def _set_available(self, available: bool, reason: str = "") -> None:
        if available == self.available:
            return
        self.available = available
        if available:
            log.info("Redis subscription up", extra={"action": "redis_up"})
            self.stats.connections += 1
        else:
            log.warning(
                "Redis subscription lost, streams poll PostgreSQL until it returns: %s",
                reason,
                extra={"action": "redis_down"},
            )
            for future in self._confirmations.values():
                if not future.done():
                    future.set_result(None)  # release waiting streams: they will poll
            self._confirmations.clear()
        for watches in self._watches.values():
            for watch in watches:
                watch.poke()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
