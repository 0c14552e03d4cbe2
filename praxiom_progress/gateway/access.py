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

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.errors import refusal
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.taskstate.models import Task

log = logging.getLogger("gateway.access")


def note_access_lost(stats: LimitStats, task_id: UUID, decision: Decision) -> None:
    """Count and log a stream ended because its caller lost access (never the token)."""
    stats.streams_access_lost += 1
    status = refusal(decision).status
    log.info(
        "stream of %s ended: the caller lost access (%d)",
        task_id,
        status,
        extra={"action": "stream_access_lost", "task_id": str(task_id), "status": status},
    )


class StreamAccess:
    """One per app, shared by every stream (a stream holds only its token digest): a stream's
    own re-read (its polls while Redis is down) of its task, only while its caller may see it."""

    def __init__(self, store: GatewayStore, stats: LimitStats) -> None:
        self.store = store
        self.stats = stats

    async def read(self, task_id: UUID, digest: bytes) -> Task | None:
        """The task; None ends the stream (no such task, or no access any more)."""
        access = await self.store.authorize_task(digest, task_id)
        if access.decision in (Decision.UNAUTHENTICATED, Decision.FORBIDDEN):
            note_access_lost(self.stats, task_id, access.decision)
        return access.task
