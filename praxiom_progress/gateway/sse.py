"""`GET /api/tasks/{task_id}/progress`: the live Server-Sent Events stream.

Subscribe, then snapshot, so no update can slip between the two; then the
stream (gateway.stream) emits every newer state from pub/sub, re-emits the row
when Redis is quiet for `SSE_IDLE_TIMEOUT` (gateway.idle), polls the row every
`SSE_POLL_INTERVAL` while Redis is down (at most `SSE_POLL_LIMIT` times), and
closes after a terminal state. A stream never sends a version lower than one it
already sent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.auth import allowed, authorize, parse_task_id, token_hash
from praxiom_progress.gateway.errors import not_found
from praxiom_progress.gateway.frames import Update, snapshot
from praxiom_progress.gateway.keepalive import PingedResponse
from praxiom_progress.gateway.keys import (
    DIRECT_WRITE,
    DISPATCHER,
    FRONT_DOOR,
    GATEWAY_STORE,
    OPENING_HOOKS,
    PINGER,
    SETTINGS,
    STREAM_ACCESS,
    STREAM_SLOTS,
    STREAM_STATS,
    STREAMS,
    WORKSPACE_STREAMS,
)
from praxiom_progress.gateway.limits import HeldSlot
from praxiom_progress.gateway.store import GatewayStore, TaskHead
from praxiom_progress.gateway.stream import ProgressStream

#: A version is a PostgreSQL bigint: at most 19 ASCII digits (`isdigit` would let `²` through).
_VERSION = re.compile(r"[0-9]{1,19}")


def disarm_keepalive(request: web.Request, response: web.StreamResponse) -> None:
    """Cancel aiohttp's keep-alive timer of a stream's connection. Armed when the connection
    opened (GATEWAY_HEADER_TIMEOUT, the slow-header guard), it has nothing to do while the
    stream is answered, and aiohttp arms it again once the response ends; but left armed, the
    timers of streams opened together (a reconnect storm) all fire in one turn of the event
    loop: 10,000 callbacks, a 100 ms stall, ten seconds after the storm."""
    protocol = request.protocol
    if protocol is not None:
        protocol.keep_alive(bool(response.keep_alive))


def ping_interval_s(setting_s: float) -> float:
    """The keep-alive period of a stream with a ping task of its own (one the shared pinger
    cannot write to: gateway.keepalive), a little under SSE_PING_INTERVAL. Streams opened
    together (a reconnect storm) would otherwise ping together, every one of a wave written in
    one turn of the event loop (2,000 streams: tens of ms); at periods of their own the waves
    spread out, and no stream is quiet for longer than the setting."""
    return setting_s * random.uniform(0.8, 1.0)


def pinged_response(app: web.Application) -> PingedResponse:
    """A stream's response, kept alive by the app's pinger (gateway.keepalive)."""
    ping_s = ping_interval_s(app[SETTINGS].sse_ping_interval_s)
    return PingedResponse(app[PINGER], app[DIRECT_WRITE], ping_s)


def last_event_id(request: web.Request) -> int | None:
    """`Last-Event-ID` (sent by browsers on reconnect) or `?last_event_id=`; junk is ignored.
    (The query is parsed only if there is one: parsed, it stays with the request.)"""
    raw = request.headers.get("Last-Event-ID")
    if raw is None and request.rel_url.raw_query_string:
        raw = request.query.get("last_event_id")
    return parse_version(raw)


def parse_version(raw: str | None) -> int | None:
    """A version as a client sends it back, or None for anything but ASCII digits."""
    if raw is None or _VERSION.fullmatch(raw.strip()) is None:
        return None
    return int(raw.strip())


async def progress(request: web.Request) -> web.StreamResponse:
    """Authorize, subscribe, snapshot, then send the task's every newer state until it ends or
    the client leaves. Memory per stream counts: this is the one frame an open stream keeps
    besides its own `run`'s (`_open` returns, as do the calls it makes), and it holds no row,
    event or caller; it takes its own front-door visit (gateway.front), so no middleware
    frame waits under it."""
    app = request.app
    visit = app[FRONT_DOOR].visit(request)
    try:
        visit.check()
        opened = await _open(request)
        if isinstance(opened, web.Response):
            return visit.answered(opened)  # 204: the client saw the end already
        stream, response, running, slot = opened
        del opened
        stats = app[STREAM_STATS]
        try:
            await running
        except ConnectionResetError:
            pass  # the client went away (or stopped reading and was dropped): a normal end
        finally:
            stats.closed += 1
            _close(app, stream, response, slot)
        return visit.answered(response)
    except Exception as exc:
        return visit.failed(exc)
    finally:
        visit.leave()


async def _open(
    request: web.Request,
) -> tuple[ProgressStream, PingedResponse, Coroutine[Any, Any, None], HeldSlot] | web.Response:
    """The stream, its prepared response, its `run` (the first event sent first) and its
    slot; or 204 for a client that has seen the task's end. 401, 404 and 403 cost no Redis
    command (one grouped query answers them), and the task's row is read once the
    subscription is confirmed, so no update can slip between the snapshot and the
    subscription."""
    app = request.app
    settings, dispatcher, stats = app[SETTINGS], app[DISPATCHER], app[STREAM_STATS]
    digest = token_hash(request, settings.session_cookie_name)
    task_id = parse_task_id(request.match_info["task_id"])
    principal, head = await _authorize(app[GATEWAY_STORE], digest, task_id)
    assert task_id is not None  # what an allowed caller means
    seen = last_event_id(request)
    if head.is_terminal and seen is not None and seen >= head.version:
        return web.Response(status=204)  # tells the browser to stop reconnecting
    slot = app[STREAM_SLOTS].hold(principal)  # 503 when full, 429 over the caller's share
    stream = ProgressStream(task_id, digest, app[STREAM_ACCESS], settings, stats)
    response = pinged_response(app)
    try:
        live = not head.is_terminal  # a finished task changes no more: nothing to listen for
        if live:
            await app[OPENING_HOOKS].subscribing(task_id)  # the test seam (gateway.opening)
            await dispatcher.watch(stream)  # subscribe, confirmed ...
        first = await _first_event(app, stream, max(head.version, seen or 0), live)
        await response.prepare(request)
        disarm_keepalive(request, response)
        app[STREAMS].add(stream)
        stats.opened += 1
    except BaseException:
        _close(app, stream, response, slot)
        raise
    return stream, response, stream.run(first, response, response.transport, dispatcher), slot


def _close(
    app: web.Application, stream: ProgressStream, response: PingedResponse, slot: HeldSlot
) -> None:
    response.stop_streaming()  # it leaves the pinger now, not at its next ping
    app[STREAMS].discard(stream)
    app[DISPATCHER].unwatch(stream)
    slot.release()


async def _authorize(
    store: GatewayStore, digest: bytes, task_id: UUID | None
) -> tuple[str, TaskHead]:
    """The caller's key (for the stream limits) and the task's status and version; 401, 404,
    403 otherwise."""
    if task_id is None:
        await authorize(store, digest, None)  # 401 for a bad token, else 404
        raise not_found()
    caller, head = allowed(await store.authorize_stream(digest, task_id))
    return caller.key, head


async def _first_event(
    app: web.Application, stream: ProgressStream, at_least: int, live: bool
) -> Update:
    """The stream's first event: the task as read once its subscription is confirmed, at
    the version its caller was authorized at or the client's Last-Event-ID, if higher (a
    standby behind that is passed over), with the reconnect hint. The caller's access is
    not read again: it was a moment ago, and the idle sweeper re-checks it from now on."""
    hooks, task_id = app[OPENING_HOOKS], stream.task_id
    if live:
        await hooks.subscribed(task_id)
    task = await app[GATEWAY_STORE].snapshot(task_id, at_least)
    if task is None:
        raise not_found()  # deleted since it was authorized
    if live:
        await hooks.snapshot_read(task_id)
    # The reconnect hint, jittered so a fleet of browsers does not come back in lockstep.
    retry_ms = int(app[SETTINGS].sse_retry_s * 1000 * random.uniform(0.5, 1.5))
    return snapshot(task, retry_ms)


async def close_all_streams(app: web.Application) -> None:
    """`on_shutdown`: end every open stream now, so clients reconnect to another gateway."""
    streams: set[ProgressStream] = app[STREAMS]
    for stream in list(streams):
        stream.close()
    workspaces = app[WORKSPACE_STREAMS]
    for workspace in list(workspaces):
        workspace.close()
