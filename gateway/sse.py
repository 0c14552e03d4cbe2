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
import weakref
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from gateway.access import RowReader, guarded_reader
from gateway.auth import authorize, parse_task_id, token_hash
from gateway.dispatcher import Dispatcher, Update, Watch
from gateway.errors import not_found
from gateway.keys import DISPATCHER, GATEWAY_STORE, SETTINGS
from gateway.lag import LagHistogram
from gateway.limits import LIMIT_STATS, STREAM_SLOTS
from taskstate.errors import StoreUnavailable
from taskstate.payloads import encode_payload, payload_from_row
from taskstate.settings import Settings
from taskstate.status import TERMINAL_STATUSES

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


def _snapshot(row: dict[str, object], retry_ms: int | None = None) -> Update:
    payload = payload_from_row(row)
    terminal = payload["status"] in TERMINAL_STATUSES
    return Update.of(int(payload["version"]), encode_payload(payload).encode(), terminal, retry_ms)


def last_event_id(request: web.Request) -> int | None:
    """`Last-Event-ID` (sent by browsers on reconnect) or `?last_event_id=`; junk is ignored."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


class ProgressStream:
    """One open stream: what it has sent, and the loop that decides what to send next."""

    def __init__(
        self,
        response: EventSourceResponse,
        watch: Watch,
        dispatcher: Dispatcher,
        read_row: RowReader,
        settings: Settings,
        stats: StreamStats,
    ) -> None:
        self.response = response
        self.watch = watch
        self.dispatcher = dispatcher
        self.read_row = read_row  # security: re-checks the caller's access on every re-read
        self.settings = settings
        self.stats = stats
        self.sent_version = 0
        self.closing = False
        # Quiet detection with one timer per idle period, not one per event: the timer only
        # re-arms itself until SSE_IDLE_TIMEOUT has passed since the last activity.
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._quiet = False
        self._quiet_timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """End the stream soon and cleanly (gateway shutdown); the client reconnects."""
        self.closing = True
        self.watch.poke()

    def _check_quiet(self) -> None:
        remaining = self._last_activity + self.settings.sse_idle_timeout_s - self._loop.time()
        if remaining > 0:
            self._quiet_timer = self._loop.call_later(remaining, self._check_quiet)
        else:
            self._quiet_timer = None
            self._quiet = True
            self.watch.poke()

    def _arm_quiet_timer(self) -> None:
        if self._quiet_timer is None:
            self._quiet_timer = self._loop.call_later(
                self.settings.sse_idle_timeout_s, self._check_quiet
            )

    async def run(self, first: Update) -> None:
        try:
            await self._run(first)
        finally:
            if self._quiet_timer is not None:
                self._quiet_timer.cancel()

    async def _run(self, first: Update) -> None:
        if await self._emit(first):
            return
        polls = 0
        polling = False
        while not self.closing:
            if self.dispatcher.available_for(self.watch):
                if polling:  # back from polling: anything published meanwhile was lost
                    polling, polls = False, 0
                    if await self._reread(force=False):
                        return
                    continue
                self._arm_quiet_timer()
                await self.watch.wait(None)
                update = self.watch.take()
                if update is not None:
                    self._last_activity = self._loop.time()  # a message, even a stale one
                    if update.version > self.sent_version and await self._emit(update):
                        return
                elif self._quiet and not self.closing:
                    self._quiet = False
                    self.stats.idle_reemits += 1
                    self._last_activity = self._loop.time()
                    if await self._reread(force=True):
                        return
            else:
                polling = True
                if polls >= self.settings.sse_poll_limit:
                    self.stats.poll_limit_closes += 1
                    return
                await self.watch.wait(self.settings.sse_poll_interval_s)
                if self.closing or self.dispatcher.available_for(self.watch):
                    continue
                polls += 1
                self.stats.polls += 1
                if await self._reread(force=False):
                    return

    async def _reread(self, *, force: bool) -> bool:
        """Read the row and emit it if newer (or, with `force`, if not older); True at the end."""
        try:
            row = await self.read_row(self.watch.task_id)
        except StoreUnavailable:
            return False  # keep the stream; the next idle or poll tries again
        if row is None:
            return True  # deleted under us, or the caller lost access: end the stream
        update = _snapshot(row)
        if update.version > self.sent_version or (force and update.version == self.sent_version):
            return await self._emit(update)
        return False

    async def _emit(self, update: Update) -> bool:
        """Send one event; True when the stream should end (terminal state sent).

        No timeout per write (it was the hot path's largest cost): a client that stops
        reading is dropped by the response's ping task, whose write times out after
        aiohttp-sse's send_timeout and aborts the connection, failing this write too."""
        await self.response.write(update.frame)
        self.sent_version = update.version
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
        caller, row = await authorize(app[GATEWAY_STORE], digest, task_id)  # ... then snapshot
        # The reconnect hint, jittered so a fleet of browsers does not come back in lockstep.
        retry_ms = int(settings.sse_retry_s * 1000 * random.uniform(0.5, 1.5))
        first = _snapshot(row, retry_ms)
        seen = last_event_id(request)
        if first.terminal and seen is not None and seen >= first.version:
            return web.Response(status=204)  # tells the browser to stop reconnecting
        with app[STREAM_SLOTS].hold(caller.key):  # 503 when full, 429 over the caller's share
            response = EventSourceResponse(ping_interval=settings.sse_ping_interval_s)
            await response.prepare(request)
            stats = app[STREAM_STATS]
            reader = guarded_reader(app[GATEWAY_STORE], digest, app[LIMIT_STATS])
            stream = ProgressStream(response, watch, dispatcher, reader, settings, stats)
            app[STREAMS].add(stream)
            stats.opened += 1
            try:
                await stream.run(first)
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
