"""When each token was last used, for `token list`: noted in memory on every request and
stream connection that a valid token makes, written in one statement per interval.

Writing on every request would turn each read into a write; the SQL also leaves a token that
any gateway wrote within the interval alone, so a token's row changes at most once per
interval however many gateways see it.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.sql import load_queries

QUERIES = load_queries("praxiom_progress.gateway", "token_use.sql")
log = logging.getLogger("praxiom.gateway.token_use")


class TokenUse:
    def __init__(self, db: Database, interval_s: float = 60.0, *, enabled: bool = True) -> None:
        self.db = db
        self.interval_s = interval_s
        # Off on a gateway that may not write (GATEWAY_WRITES=0): nothing noted, nothing written.
        self.enabled = enabled
        self._seen: set[UUID] = set()

    def note(self, token_id: UUID) -> None:
        if self.enabled:
            self._seen.add(token_id)

    async def write(self) -> int:
        """Write the tokens noted since the last write; how many rows changed. When
        PostgreSQL is away they are kept for the next try."""
        if not self._seen:
            return 0
        seen, self._seen = self._seen, set()
        try:
            rows = await self.db.fetch_all(
                QUERIES["note_token_use"],
                {"token_ids": list(seen), "interval_s": self.interval_s},
            )
        except StoreUnavailable:
            self._seen |= seen
            raise
        return len(rows)

    async def close(self) -> None:
        """The last write, at shutdown, so a stopping gateway loses no use it saw."""
        try:
            await self.write()
        except StoreUnavailable as exc:
            log.debug("token use not written: %s", exc, extra={"action": "token_use"})

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.write()
            except StoreUnavailable as exc:  # the dependency watch says so already
                log.debug("token use not written: %s", exc, extra={"action": "token_use"})
            except Exception:  # a bookkeeping write must never end the loop
                log.exception("token use not written", extra={"action": "token_use"})
