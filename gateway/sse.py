"""`GET /api/tasks/{task_id}/progress`: the live Server-Sent Events stream.

Subscribe, then snapshot, so no update can slip between the two; then
emit every newer state from pub/sub, re-read the row when Redis is quiet for
`SSE_IDLE_TIMEOUT`, poll the row every `SSE_POLL_INTERVAL` while Redis is down
(at most `SSE_POLL_LIMIT` times), and close after a terminal state. A stream
never sends a version lower than one it already sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from gateway.access import STREAM_ACCESS, StreamAccess
from gateway.auth import authorize, parse_task_id, token_hash
from gateway.dispatcher import Dispatcher, Update, Watch
from gateway.errors import not_found
from gateway.keys import DISPATCHER, GATEWAY_STORE, SETTINGS
from gateway.lag import LagHistogram
from gateway.limits import STREAM_SLOTS
from taskstate.errors import StoreUnavailable
from taskstate.models import Task
from taskstate.payloads import encode_payload, task_payload
from taskstate.settings import Settings

log = logging.getLogger("gateway.sse")


@dataclass
class StreamStats:
    opened: int = 0
    closed: int = 0
    events: int = 0
    idle_reemits: int = 0
    polls: int = 0
    poll_limit_closes: int = 0
    lag: LagHistogram = field(default_factory=LagHistogram)  # sampled publish-to-send lag

    @property
    def open(self) -> int:
        return self.opened - self.closed


def snapshot(task: Task, retry_ms: int | None = None) -> Update:
    """The event for a task read from PostgreSQL."""
    data = encode_payload(task_payload(task)).encode()
    return Update.of(task.version, data, task.is_terminal, retry_ms)


def last_event_id(request: web.Request) -> int | None:
    """`Last-Event-ID` (sent by browsers on reconnect) or `?last_event_id=`; junk is ignored."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


class ProgressStream:
    """One open stream: the loop that runs while the dispatcher cannot write for it.

    In pub/sub mode the dispatcher writes each update straight to the socket (see
    `Watch`), and the idle sweeper (gateway.idle) re-reads the row of a quiet stream, so
    this task sleeps until a terminal state, a slow socket, a Redis state change or
    shutdown wakes it. While Redis is down it polls the row itself.
    """

    __slots__ = ("__weakref__", "access", "checked_at", "closing", "digest", "dispatcher", "live",
                 "response", "settings", "stats", "transport", "watch")  # fmt: skip

    def __init__(
        self,
        response: EventSourceResponse,
        transport: asyncio.Transport | None,
        watch: Watch,
        dispatcher: Dispatcher,
        access: StreamAccess,
        digest: bytes,
        settings: Settings,
        stats: StreamStats,
    ) -> None:
        self.response = response
        self.transport = transport
        self.watch = watch
        self.dispatcher = dispatcher
        # Security: every re-read re-checks the caller's token digest (gateway.access), here
        # and in the idle sweeper.
        self.access = access
        self.digest = digest
        self.settings = settings
        self.stats = stats
        self.closing = False
        self.live = False  # in pub/sub mode: the idle sweeper looks after it
        # When its caller's access was last checked (at open; then by the idle sweeper, every
        # SSE_IDLE_TIMEOUT, busy or quiet).
        self.checked_at = time.monotonic()

    def close(self) -> None:
        """End the stream soon and cleanly (gateway shutdown); the client reconnects."""
        self.closing = True
        self.watch.poke()

    async def run(self, first: Update) -> None:
        """Send `first`, then follow the task to its end (one coroutine: a frame per stream)."""
        watch = self.watch
        try:
            if await self._emit(first):
                return
            del first  # an open stream keeps nothing it does not need: memory per stream counts
            # After the first write the headers are out, so whole chunks may go straight to
            # the socket. (aiohttp-sse always streams chunked; anything else: the slow path.)
            transport = self.transport if self.response.chunked else None
            watch.last_activity = time.monotonic()
            polls = 0
            polling = False
            while not self.closing:
                if self.dispatcher.available_for(watch):
                    if polling:  # back from polling: anything published meanwhile was lost
                        polling, polls = False, 0
                        if await self._reread():
                            return
                        continue
                    watch.transport, self.live = transport, True
                    await watch.wait(None)
                    update = watch.take()
                    if update is not None and await self._emit(update):
                        return
                else:
                    watch.transport, self.live = None, False
                    polling = True
                    if polls >= self.settings.sse_poll_limit:
                        self.stats.poll_limit_closes += 1
                        return
                    await watch.wait(self.settings.sse_poll_interval_s)
                    if self.closing or self.dispatcher.available_for(watch):
                        continue
                    polls += 1
                    self.stats.polls += 1
                    if await self._reread():
                        return
        finally:
            self.live = False
            watch.transport = None

    async def _reread(self) -> bool:
        """Read the row and emit it if newer; True when the stream should end."""
        try:
            task = await self.access.read(self.watch.task_id, self.digest)
        except StoreUnavailable:
            return False  # keep the stream; the next poll tries again
        if task is None:
            return True  # deleted under us, or the caller lost access: end the stream
        update = snapshot(task)
        if update.version > self.watch.sent_version:
            return await self._emit(update)
        return False

    async def _emit(self, update: Update) -> bool:
        """Send one event from this task; True when the stream should end (terminal state).

        No timeout per write: a client that stops reading is dropped by the response's ping
        task, whose write times out after aiohttp-sse's send_timeout and aborts the
        connection, failing this write too."""
        self.watch.sent_version = update.version  # first: the dispatcher may write meanwhile
        await self.response.write(update.frame)
        self.stats.events += 1
        if update.received:
            self.stats.lag.record_since(update.received)
        return update.terminal


STREAMS = web.AppKey("streams", weakref.WeakSet[ProgressStream])
STREAM_STATS = web.AppKey("stream_stats", StreamStats)


async def progress(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings, dispatcher = app[SETTINGS], app[DISPATCHER]
    digest = token_hash(request, settings.session_cookie_name)
    task_id = parse_task_id(request.match_info["task_id"])
    if task_id is None:
        await authorize(app[GATEWAY_STORE], digest, None)  # 401 for a bad token, else 404
        raise not_found()
    watch = await dispatcher.watch(task_id)  # subscribe first ...
    try:
        caller, task = await authorize(app[GATEWAY_STORE], digest, task_id)  # ... then snapshot
        # The reconnect hint, jittered so a fleet of browsers does not come back in lockstep.
        retry_ms = int(settings.sse_retry_s * 1000 * random.uniform(0.5, 1.5))
        first = snapshot(task, retry_ms)
        del task  # an open stream keeps nothing it does not need: memory per stream counts
        seen = last_event_id(request)
        if first.terminal and seen is not None and seen >= first.version:
            return web.Response(status=204)  # tells the browser to stop reconnecting
        with app[STREAM_SLOTS].hold(caller.key):  # 503 when full, 429 over the caller's share
            response = EventSourceResponse(ping_interval=settings.sse_ping_interval_s)
            await response.prepare(request)
            stats = app[STREAM_STATS]
            access = app[STREAM_ACCESS]
            stream = ProgressStream(
                response, request.transport, watch, dispatcher, access, digest, settings, stats
            )
            app[STREAMS].add(stream)
            stats.opened += 1
            running = stream.run(first)
            del first  # held by the stream only as long as it needs it
            try:
                await running
            except ConnectionResetError:
                pass  # the client went away (or stopped reading and was dropped): a normal end
            finally:
                response.stop_streaming()  # its ping task would outlive a cancelled handler
                app[STREAMS].discard(stream)
                stats.closed += 1
            return response
    finally:
        dispatcher.unwatch(watch)


async def close_all_streams(app: web.Application) -> None:
    """`on_shutdown`: end every open stream now, so clients reconnect to another gateway."""
    streams: weakref.WeakSet[ProgressStream] = app[STREAMS]
    for stream in list(streams):
        stream.close()
