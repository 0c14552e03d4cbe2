"""`GET /api/workspaces/{workspace_id}/progress`: every task of a workspace on one stream.

The same headers and auth rules as a task's stream (gateway.sse): authorize first (401, 404,
403 in one query, the per-caller stream limit 429), subscribe, then read, so no change can
fall between the read and the subscription. With `Last-Event-ID` (or `?last_event_id=`) the
first read is the tasks changed since that mark; without it, the snapshot: every task not
finished and those finished within SSE_WORKSPACE_RECENT, at most SSE_WORKSPACE_MAX_TASKS,
newest first. What follows is gateway.workspace's.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine, Iterable
from typing import Any
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.access_log import note_principal
from praxiom_progress.gateway.auth import parse_task_id, token_hash
from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.errors import ApiError, not_found, refusal
from praxiom_progress.gateway.keys import (
    DISPATCHER,
    GATEWAY_STORE,
    LIMIT_STATS,
    SETTINGS,
    STREAM_SLOTS,
    STREAM_STATS,
    WORKSPACE_READS,
    WORKSPACE_STREAMS,
)
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.sse import disarm_keepalive, last_event_id, pinged_response
from praxiom_progress.gateway.workspace import WorkspaceStream
from praxiom_progress.gateway.workspace_reads import WorkspaceRead, WorkspaceReads

#: A mark is a PostgreSQL bigint; a larger Last-Event-ID is no mark of ours.
_MAX_MARK = 2**63 - 1
#: What a workspace id that is not a UUID is looked up as: no workspace has it.
_NO_WORKSPACE = UUID(int=0)


def workspace_refusal(decision: Decision) -> ApiError:
    """The task stream's refusals, worded for a workspace."""
    if decision is Decision.NOT_FOUND:
        return not_found("workspace")
    if decision is Decision.FORBIDDEN:
        return ApiError(403, "FORBIDDEN", "You are not a member of this workspace")
    return refusal(decision)


async def workspace_progress(request: web.Request) -> web.StreamResponse:
    """Authorize, subscribe, read, then stream until the client leaves or loses access."""
    app = request.app
    settings, dispatcher, reads = app[SETTINGS], app[DISPATCHER], app[WORKSPACE_READS]
    digest = token_hash(request, settings.session_cookie_name)
    workspace_id = parse_task_id(request.match_info["workspace_id"]) or _NO_WORKSPACE
    caller, decision = await reads.authorize(digest, workspace_id)
    if caller is not None:
        note_principal(caller.key)
    if decision is not Decision.ALLOWED:
        raise workspace_refusal(decision)
    assert caller is not None  # what ALLOWED means
    since = last_event_id(request)
    with app[STREAM_SLOTS].hold(caller.key):  # 503 when full, 429 over the caller's share
        del caller  # an open stream keeps nothing it does not need: memory per stream counts
        stream = WorkspaceStream(
            workspace_id,
            digest,
            reads,
            app[GATEWAY_STORE],
            settings,
            app[STREAM_STATS],
            app[LIMIT_STATS],
        )
        await dispatcher.watch(stream)  # subscribe, confirmed ...
        try:
            first = await _first_read(reads, digest, workspace_id, since)  # ... then read
            if not first.allowed:  # access lost since the check above
                raise workspace_refusal(Decision.FORBIDDEN)
            streaming = _stream(request, stream, first)
            del first  # up to SSE_WORKSPACE_MAX_TASKS rows: held only until they are sent
            return await streaming
        finally:
            dispatcher.unwatch(stream)


async def _first_read(
    reads: WorkspaceReads, digest: bytes, workspace_id: UUID, since: int | None
) -> WorkspaceRead:
    """A reconnect's catch-up from its mark, or (no mark, or not one of ours) the snapshot."""
    if since is not None and since <= _MAX_MARK:
        read = await reads.changes(digest, workspace_id, since)
        if read.known or not read.allowed:
            return read
    return await reads.snapshot(digest, workspace_id)


async def _stream(
    request: web.Request, stream: WorkspaceStream, first: WorkspaceRead
) -> web.StreamResponse:
    app = request.app
    settings, stats = app[SETTINGS], app[STREAM_STATS]
    response = pinged_response(app)
    await response.prepare(request)
    disarm_keepalive(request, response)
    app[WORKSPACE_STREAMS].add(stream)
    stats.opened += 1
    # The reconnect hint, jittered so a fleet of browsers does not come back in lockstep.
    retry_ms = int(settings.sse_retry_s * 1000 * random.uniform(0.5, 1.5))
    running = stream.run(first, retry_ms, response, app[DISPATCHER], response.transport)
    del first  # held by the stream only until it is sent
    try:
        await running
    except ConnectionResetError:
        pass  # the client went away (or stopped reading and was dropped): a normal end
    finally:
        response.stop_streaming()  # it leaves the pinger now, not at its next ping
        app[WORKSPACE_STREAMS].discard(stream)
        stats.closed += 1
    return response


def recheck_workspace_streams(
    streams: Iterable[WorkspaceStream], reads: WorkspaceReads, limit_stats: LimitStats
) -> Coroutine[Any, Any, int]:
    """Access was taken away somewhere: hold every workspace stream now (each sends nothing
    until its check has answered), and return the check of them all (one statement), which
    closes the streams of callers who lost the workspace and says how many. It raises
    StoreUnavailable with the streams still held (the caller tries again)."""
    held = list(streams)
    for stream in held:
        stream.hold()
    return _recheck(held, reads)


async def _recheck(held: list[WorkspaceStream], reads: WorkspaceReads) -> int:
    refused = await reads.refused([(s.workspace_id, s.digest) for s in held])
    for stream, decision in zip(held, refused, strict=True):
        if decision is None:
            stream.release()
        else:
            stream.lost(decision)
            stream.close()
    return sum(1 for decision in refused if decision is not None)
