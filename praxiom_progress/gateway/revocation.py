"""Revocation at once: when access is taken away (a token revoked, a member removed, a grant
deleted), PostgreSQL announces it at commit (schema.sql's triggers NOTIFY
`praxiom_access_changed`, heard by gateway.listener), and this gateway re-checks every open
stream's caller at once, closing the streams of callers who lost the task; until a stream's
check has answered it sends nothing. The idle sweeper's re-check every SSE_IDLE_TIMEOUT stays
as the safety net (a gateway whose LISTEN connection is down hears nothing)."""

from __future__ import annotations

import asyncio
import logging

from praxiom_progress.gateway.idle import IdleSweeper
from praxiom_progress.taskstate.errors import StoreUnavailable

log = logging.getLogger("gateway.access")

#: The longest wait between re-check attempts while PostgreSQL is away.
RETRY_MAX_S = 2.0


class AccessChanges:
    def __init__(self, sweeper: IdleSweeper) -> None:
        self._sweeper = sweeper
        self.rechecks = 0  # how many times every stream was re-checked (tests, metrics)

    async def recheck(self) -> None:
        """Until PostgreSQL answers: while it does not, no runner can write either, so the
        held streams miss nothing."""
        delay = 0.1
        while True:
            try:
                closed = await self._sweeper.recheck_all()
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            self.rechecks += 1
            if closed:
                log.info(
                    "access changed: %d stream(s) closed",
                    closed,
                    extra={"action": "access_changed"},
                )
            return
