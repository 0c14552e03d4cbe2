"""The task types this gateway accepts: the `task_types` catalogue the runners write, read with
a short cache, narrowed by `TASK_TYPES` when that allow-list is set.

A spawn of a type the cache does not hold re-reads the catalogue first, so a type a runner
registered a moment ago is accepted at once. Pending tasks of a type no live runner serves
are not refused (a runner may be on its way) but reported, in `/metrics` and `/readyz`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.spawning import CatalogueView
from praxiom_progress.taskstate.sql import load_queries

QUERIES = load_queries("praxiom_progress.gateway", "catalogue.sql")
TASKSTATE_QUERIES = load_queries("praxiom_progress.taskstate")
#: How long a catalogue read is reused.
CACHE_S = 1.0


@dataclass(frozen=True)
class UnservedType:
    """Pending tasks of a type no live runner serves."""

    task_type: str
    pending: int
    oldest_pending_s: float

    def warning(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "pending": self.pending,
            "oldest_pending_s": round(self.oldest_pending_s, 1),
            "message": f"{self.pending} pending {self.task_type} task(s): no live runner "
            "serves this type",
        }


class TaskTypeCatalogue:
    def __init__(
        self,
        db: Database,
        *,
        stale_after_s: float,
        allowed: tuple[str, ...] = (),
        cache_s: float = CACHE_S,
    ) -> None:
        """`allowed` is `TASK_TYPES`: empty accepts every catalogued type."""
        self._db = db
        self._stale_after_s = stale_after_s
        self._allowed = frozenset(allowed)
        self._cache_s = cache_s
        self._view: CatalogueView | None = None
        self._reading = asyncio.Lock()
        #: The last `unserved()` answer, for the metrics collector (which cannot await).
        self.unserved_last: list[UnservedType] = []

    async def current(self, wanted: str | None = None) -> CatalogueView:
        """The catalogue, re-read when the cached read is old or lacks `wanted`."""
        view = self._view
        if view is not None and not self._outdated(view, wanted):
            return view
        asked_at = time.monotonic()
        async with self._reading:  # one read at a time: those that waited share its answer
            view = self._view
            if view is None or (view.read_at < asked_at and self._outdated(view, wanted)):
                view = self._view = await self._read()
        return view

    def _outdated(self, view: CatalogueView, wanted: str | None) -> bool:
        too_old = time.monotonic() - view.read_at > self._cache_s
        return too_old or (wanted is not None and wanted not in view.types)

    async def _read(self) -> CatalogueView:
        started = time.monotonic()  # what a runner recorded before this is in the answer
        rows = await self._db.fetch_all(
            TASKSTATE_QUERIES["task_types"], {"stale_after_s": self._stale_after_s}
        )
        return CatalogueView.from_rows(rows, started, self._allowed)

    async def unserved(self) -> list[UnservedType]:
        """Types with pending tasks that no live runner serves (also kept in `unserved_last`)."""
        rows = await self._db.fetch_all(
            QUERIES["unserved_pending"], {"stale_after_s": self._stale_after_s}
        )
        self.unserved_last = [
            UnservedType(row["task_type"], row["pending"], row["oldest_pending_s"]) for row in rows
        ]
        return self.unserved_last
