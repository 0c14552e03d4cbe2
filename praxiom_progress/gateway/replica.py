"""Reads from a hot standby (DATABASE_READ_URL) while it keeps up, else from the primary.

`ReadRouting` compares, every DATABASE_READ_CHECK_INTERVAL, the primary's WAL position with
what the standby has replayed. When the standby has replayed everything the primary had
written at a moment t, every commit before t is visible there: t is `caught_up_to`. A read
goes to the standby only while `caught_up_to` is at most DATABASE_READ_MAX_LAG old; a paused,
broken or unreachable standby stops being caught up, and its reads move to the primary.

Why a stream then misses nothing: it subscribes (time s) before its snapshot, so later
commits reach it through Redis. A commit before s that a lagging standby had not replayed is
found by the stream's first idle re-read, at s + SSE_IDLE_TIMEOUT or later: that read goes to
the standby only if it covers everything up to now - DATABASE_READ_MAX_LAG >= s (settings
refuse a larger lag than the idle timeout). A stream never goes backwards: it sends a version
only above the one it sent (gateway.stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from praxiom_progress.taskstate.db import Database, Row
from praxiom_progress.taskstate.errors import StoreUnavailable

log = logging.getLogger("gateway.replica")


class Reads(Protocol):
    """What a reading store needs: a `Database`, or a `ReadRouting` in front of two."""

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None: ...


class ReadRouting:
    def __init__(
        self,
        primary: Database,
        standby: Database,
        *,
        max_lag_s: float,
        check_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.standby = standby
        self._max_lag_s = max_lag_s
        self._check_interval_s = check_interval_s
        self._clock = clock
        self.caught_up_to = float("-inf")  # nothing known yet: the primary answers
        self.standby_reads = 0
        self.primary_reads = 0

    def fresh(self) -> bool:
        """Whether the standby has replayed every commit older than DATABASE_READ_MAX_LAG."""
        return self._clock() - self.caught_up_to <= self._max_lag_s

    def choose(self) -> Database:
        if self.fresh():
            self.standby_reads += 1
            return self.standby
        self.primary_reads += 1
        return self.primary

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """From the chosen server; a standby that fails (gone, or a recovery conflict
        cancelled the statement) hands the read, and those after it, to the primary until
        a check finds it caught up again."""
        chosen = self.choose()
        if chosen is self.primary:
            return await chosen.fetch_all(sql, params)
        try:
            return await chosen.fetch_all(sql, params)
        except StoreUnavailable as exc:
            if self.fresh():
                log.warning("standby failed, reads go to the primary: %s", exc,
                            extra={"action": "standby_failed"})  # fmt: skip
            self.caught_up_to = float("-inf")
            self.primary_reads += 1
            return await self.primary.fetch_all(sql, params)

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def check(self) -> bool:
        """One comparison; True when the standby had replayed all the primary had written."""
        # Before the primary's position: commits before it are in it. The insert position, not
        # the write one: with synchronous_commit=off a commit may not be written out yet.
        sampled = self._clock()
        row = await self.primary.fetch_one("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        assert row is not None
        replayed = await self.standby.fetch_one(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn, false) AS caught_up",
            {"lsn": row["lsn"]},
        )
        if replayed is None or not replayed["caught_up"]:
            return False
        self.caught_up_to = max(self.caught_up_to, sampled)
        return True

    async def run(self) -> None:
        """Check forever; a server away leaves `caught_up_to` where it was (reads move to
        the primary once it is too old)."""
        was_fresh = False
        while True:
            try:
                await self.check()
            except StoreUnavailable as exc:
                log.debug("standby lag not measured: %s", exc, extra={"action": "standby_lag"})
            fresh = self.fresh()
            if fresh != was_fresh:
                log.warning(
                    "standby %s: reads go to the %s",
                    "caught up" if fresh else "behind",
                    "standby" if fresh else "primary",
                    extra={"action": "standby_fresh" if fresh else "standby_behind"},
                )
                was_fresh = fresh
            await asyncio.sleep(self._check_interval_s)
