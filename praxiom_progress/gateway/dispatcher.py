"""One Redis subscription per gateway process, shared by every stream.

redis-py gives each PubSub its own connection (the pool stops at 100), so a
connection per stream cannot scale. The dispatcher owns a single PubSub:
a channel is subscribed when its first stream arrives and unsubscribed when
its last one leaves. Each message is decoded and encoded once (gateway.frames)
and delivered to every stream of its task (gateway.fanout: at most SSE_DELIVER_CHUNK
streams per turn of the loop, in arrival order; gateway.stream: each keeps only the
newest state, and never drops the terminal one).

The dispatcher also owns reconnection: when Redis goes away it wakes every
stream (they fall back to polling PostgreSQL), reconnects with backoff,
subscribes every live channel again, and wakes them again once it is back.

With `sharded=True` it speaks sharded pub/sub (SSUBSCRIBE) to one node of a
Redis Cluster; gateway.cluster runs one such dispatcher per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from praxiom_progress.gateway.dispatching import DispatcherStats
from praxiom_progress.gateway.fanout import Fanout
from praxiom_progress.gateway.frames import Update, decode_message
from praxiom_progress.gateway.lag import LagHistogram, LagSampler
from praxiom_progress.gateway.opening import OpeningHooks
from praxiom_progress.gateway.stream import Watcher
from praxiom_progress.taskstate.cancellation import cancel_and_wait
from praxiom_progress.taskstate.channels import PROGRESS_CHANNEL_PREFIX, WORKSPACE_CHANNEL_PREFIX
from praxiom_progress.taskstate.status import TERMINAL_STATUSES

log = logging.getLogger("gateway.dispatcher")

#: How long an unsubscribe waits before it is sent (with the others of that second), and how
#: long `get_message` waits for a confirmation while (re)connecting.
READ_TIMEOUT_S = 1.0
#: The longest wait between reconnect attempts while Redis is down (each shard's, in cluster
#: mode). Streams must be back on pub/sub within 5 s of Redis returning (issue 6): the wait,
#: plus connecting and resubscribing every live channel, has to fit in that.
RECONNECT_MAX_S = 2.0
#: How long a new stream waits for Redis to confirm its subscription.
CONFIRM_TIMEOUT_S = 2.0
#: The most streams one message is handed to in one turn of the loop (SSE_DELIVER_CHUNK).
DELIVER_CHUNK = 100
#: Where the task id starts in a channel's name.
_TASK_ID_AT, _WORKSPACES = len(PROGRESS_CHANNEL_PREFIX), WORKSPACE_CHANNEL_PREFIX


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
        hooks: OpeningHooks | None = None,
        chunk: int = DELIVER_CHUNK,
    ) -> None:
        self._redis = redis
        self._hooks = hooks or OpeningHooks()  # the test seam (gateway.opening)
        self._sharded = sharded
        # The cluster re-reads its slot map when the connection fails, or when the node drops
        # a watched channel (its slot moved to another node).
        self._on_lost = on_lost
        self._on_dropped = on_dropped
        self._max_backoff_s = max_backoff_s
        self._watches: dict[str, set[Watcher]] = {}  # channel -> its streams
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._to_unsubscribe: set[str] = set()
        self._to_subscribe: set[str] = set()
        self._batch: list[str] = []  # new channels for the next SUBSCRIBE
        self._sending: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None  # sends the two sets above
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.available = False
        self.stats = DispatcherStats()
        self.lag_sampler = LagSampler()  # see gateway.lag
        # Where direct writes record the sampled publish-to-send lag: `lag`.
        self._fanout = Fanout(self._watches, self.stats, chunk=chunk, lag=lag)

    # -- counters the tests and metrics read -----------------------------------------------

    @property
    def channel_count(self) -> int:
        return len(self._watches)

    @property
    def watch_count(self) -> int:
        return sum(len(watches) for watches in self._watches.values())

    @property
    def queued_messages(self) -> int:
        """Messages not yet handed to all their streams (gateway.fanout)."""
        return self._fanout.pending

    @property
    def subscribed_channels(self) -> int:
        if self._pubsub is None:
            return 0
        return len(self._pubsub.shard_channels if self._sharded else self._pubsub.channels)

    def available_for(self, stream: Watcher) -> bool:
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
        tasks = (self._reader, self._sending, self._flushing)
        await cancel_and_wait([t for t in tasks if t is not None])
        await self._drop_pubsub()

    # -- watching ----------------------------------------------------------------------------

    async def watch(self, stream: Watcher) -> None:
        """Register a stream; when it is the channel's first, wait until Redis confirms the
        subscription, so that nothing published after this returns can be missed."""
        channel = stream.channel
        watches = self._watches.setdefault(channel, set())
        watches.add(stream)
        self._to_unsubscribe.discard(channel)
        try:
            if len(watches) == 1 and self.available and self._pubsub is not None:
                self._subscribe_soon(channel)
                await self._await_confirmation(channel)
            elif channel in self._confirmations:
                await self._await_confirmation(channel)  # a subscribe is under way
        except BaseException:
            self.unwatch(stream)  # cancelled (the client left): the caller will not unwatch
            raise

    def unwatch(self, stream: Watcher) -> None:
        watches = self._watches.get(stream.channel)
        if watches is None:
            return
        watches.discard(stream)
        if not watches:
            del self._watches[stream.channel]
            self._to_unsubscribe.add(stream.channel)  # sent within a second
            self._flush_soon()

    def release(self, channel: str) -> set[Watcher]:
        """Hand a channel's streams over to another shard (its hash slot moved)."""
        watches = self._watches.pop(channel, set())
        self._to_unsubscribe.add(channel)
        self._flush_soon()
        future = self._confirmations.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)
        return watches

    def adopt(self, channel: str, streams: Iterable[Watcher]) -> None:
        """Take over streams from another shard; they re-read the row once subscribed here."""
        self._watches.setdefault(channel, set()).update(streams)
        self._to_unsubscribe.discard(channel)
        self._to_subscribe.add(channel)
        self._flush_soon()
        for stream in self._watches[channel]:
            stream.wake()

    def _subscribe_soon(self, channel: str) -> None:
        """Subscribe with every channel asked for in this turn of the loop: one SUBSCRIBE for a
        burst of new streams (a deploy's reconnect storm answers its authorizations together),
        not one round of command packing and socket write each."""
        self._confirmations[channel] = asyncio.get_running_loop().create_future()
        self._batch.append(channel)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_batches(), name="subscribe-batch")

    async def _send_batches(self) -> None:
        await asyncio.sleep(0)  # the other streams this turn let through join the batch
        while self._batch and self._pubsub is not None:
            channels = [c for c in self._batch if c in self._watches]  # none left meanwhile
            self._batch = []
            try:
                await self._send_subscribe(self._pubsub, channels)
            except (RedisError, OSError) as exc:
                for channel in channels:  # released to poll; the reader tries again shortly
                    _settle(self._confirmations.pop(channel, None))
                self._to_subscribe.update(channels)
                self._flush_soon()
                log.warning("subscribe failed: %s", exc, extra={"action": "subscribe_failed"})

    async def _await_confirmation(self, channel: str) -> None:
        future = self._confirmations.get(channel)
        if future is None:
            return
        await self._hooks.confirming(channel)
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
                self._flush_soon()  # what streams left while it connected
                while True:  # no timeout: a timer per message costs more than the rest of it
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._handle(message)
                    if self._fanout.pending:  # a hot task's fan-out: the next message waits
                        await self._fanout.drained()
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

    def _flush_soon(self) -> None:
        if self._to_unsubscribe or self._to_subscribe:
            if self._flushing is None or self._flushing.done():
                self._flushing = asyncio.create_task(self._flush_later(), name="subscribe-flush")

    async def _flush_later(self) -> None:
        """Send, a second later, what streams left: unsubscribes (those of a wave of closes in
        one command; a stream back meanwhile keeps its subscription) and subscribes that
        failed. Nothing while Redis is down: reconnecting subscribes what is watched then."""
        while self._to_unsubscribe or self._to_subscribe:
            await asyncio.sleep(READ_TIMEOUT_S)
            pubsub = self._pubsub
            if pubsub is None or not self.available:
                return
            with contextlib.suppress(RedisError, OSError):  # the reader sees the connection go
                await self._flush_pending(pubsub)

    async def _flush_pending(self, pubsub: aioredis.client.PubSub) -> None:
        """Send what streams left: unsubscribes, and subscribes that failed."""
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
        data = message["data"]
        self.offer(channel, data if isinstance(data, bytes) else str(data).encode())

    def offer(self, channel: str, data: bytes) -> None:
        """A payload (from Redis, or gateway.written) checked, then handed to every stream."""
        watches = self._watches.get(channel)
        if not watches:
            return
        try:
            decoded = decode_message(data)
            task_id = decoded["id"]  # a workspace's streams check theirs (gateway.workspace)
            if task_id != channel[_TASK_ID_AT:] and not channel.startswith(_WORKSPACES):
                self.stats.mismatched += 1
                log.warning(
                    "dropped a message on %s for another task", channel,
                    extra={"action": "message_mismatched"},
                )  # fmt: skip
                return
            terminal = decoded["status"] in TERMINAL_STATUSES
            stamp = self.lag_sampler.stamp()
            update = Update.of(int(decoded["version"]), data, terminal, None, stamp, str(task_id))
        except (ValueError, KeyError, TypeError):
            self.stats.undecodable += 1
            log.warning("ignored an undecodable message on %s", channel)
            return
        self._fanout.send(channel, update, watches)

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
            for stream in watches:
                stream.wake()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
