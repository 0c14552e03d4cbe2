"""An open stream's re-check: the caller must still hold a valid token and access to the task.

The spec re-verifies membership at every connection; a stream can stay open for as long as
its task runs, so it is re-checked in the query that re-reads the row: the idle sweeper's
batch (gateway.idle, `reread_streams`: every stream's caller, busy or quiet, and the quiet
ones' rows, in one round trip every `SSE_IDLE_TIMEOUT`) and each fallback poll while Redis
is down (the connect's own `authorize_task`). A caller whose token expired or was revoked,
or who lost the workspace, gets no row, and the stream ends; the browser's reconnect then
gets 401 or 403.
"""

from __future__ import annotations

import logging
from uuid import UUID

from aiohttp import web

from gateway.limits import LimitStats
from gateway.store import GatewayStore
from taskstate.db import Row

log = logging.getLogger("gateway.access")


async def still_allowed(
    store: GatewayStore, digest: bytes, task_id: UUID
) -> tuple[int, Row | None]:
    """(200, row) while the caller may still see the task; else (401 or 403 or 404, None),
    the status its reconnect would get."""
    access = await store.authorize_task(digest, task_id)
    if access.caller is None:
        return 401, None
    if access.task is None:
        return 404, None
    if not access.is_member:
        return 403, None
    return 200, access.task


def note_access_lost(stats: LimitStats, task_id: UUID, status: int) -> None:
    """Count and log a stream ended because its caller lost access (never the token)."""
    stats.streams_access_lost += 1
    log.info(
        "stream of %s ended: the caller lost access (%d)",
        task_id,
        status,
        extra={"action": "stream_access_lost", "task_id": str(task_id), "status": status},
    )


class StreamAccess:
    """One per app, shared by every stream (a stream holds only its token digest): a stream's
    own re-read (its polls while Redis is down) of its row, only while its caller may see it."""

    def __init__(self, store: GatewayStore, stats: LimitStats) -> None:
        self.store = store
        self.stats = stats

    async def read(self, task_id: UUID, digest: bytes) -> Row | None:
        """The row; None ends the stream (no such task, or no access any more)."""
        status, row = await still_allowed(self.store, digest, task_id)
        if status in (401, 403):
            note_access_lost(self.stats, task_id, status)
        return row


STREAM_ACCESS = web.AppKey("stream_access", StreamAccess)
