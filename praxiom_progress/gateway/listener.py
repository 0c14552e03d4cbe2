"""One LISTEN connection per gateway, for what PostgreSQL announces at commit: access taken
away (gateway.revocation re-checks every stream), and tasks spawned or cancelled by someone
who does not publish to Redis, a gateway or an application (gateway.written hands them to
this gateway's streams)."""

from __future__ import annotations

import asyncio
import logging

from praxiom_progress.gateway.revocation import AccessChanges
from praxiom_progress.gateway.written import TaskWrites
from praxiom_progress.taskstate.channels import (
    ACCESS_CHANGED_NOTIFY,
    TASK_CANCELLED_NOTIFY,
    TASK_PENDING_NOTIFY,
)
from praxiom_progress.taskstate.db import Database, ListenUnheard, Notification
from praxiom_progress.taskstate.errors import StoreUnavailable

log = logging.getLogger("gateway.access")

CHANNELS = (ACCESS_CHANGED_NOTIFY, TASK_PENDING_NOTIFY, TASK_CANCELLED_NOTIFY)
#: The longest wait between LISTEN reconnects.
RETRY_MAX_S = 2.0


class DatabaseEvents:
    def __init__(
        self, db: Database, access: AccessChanges, writes: TaskWrites, *, retry_s: float = 60.0
    ) -> None:
        self._db = db
        self._retry_s = retry_s  # DATABASE_LISTEN_RETRY
        self._access = access
        self._writes = writes

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self._db.listen(CHANNELS, name="praxiom-gateway-events") as notes:
                    delay = 0.1
                    await self._access.recheck()  # anything that changed while nobody listened
                    while True:
                        await self._react([await notes.get(), *notes.received()])
            except ListenUnheard as exc:  # behind PgBouncer without DATABASE_LISTEN_URL
                log.warning(
                    "%s; streams rely on the idle re-check meanwhile",
                    exc,
                    extra={"action": "listen_unheard"},
                )
                await asyncio.sleep(self._retry_s)
            except StoreUnavailable as exc:
                log.warning(
                    "LISTEN lost: streams rely on the idle re-check until it is back: %s",
                    exc,
                    extra={"action": "access_listen_lost"},
                )
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _react(self, notes: list[Notification]) -> None:
        """Task writes are handed on; one re-check answers every access change so far."""
        access_changed = False
        for note in notes:
            if note.channel == ACCESS_CHANGED_NOTIFY:
                access_changed = True
            else:
                self._writes.heard(note.payload)
        if access_changed:
            await self._access.recheck()
