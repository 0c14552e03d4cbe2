"""The task types this gateway accepts: the `task_types` catalogue the runners write, read with
a short cache, narrowed by `TASK_TYPES` when that allow-list is set.

A spawn of a type the cache does not hold re-reads the catalogue first, so a type a runner
registered a moment ago is accepted at once. Pending tasks of a type no live runner serves
are not refused (a runner may be on its way) but reported, in `/metrics` and `/readyz`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from praxiom_progress.gateway.params import ParamsCheck
from praxiom_progress.gateway.schemas import SpawnRequestSchema, spawn_request_schema
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.sql import load_queries

QUERIES = load_queries("praxiom_progress.gateway", "catalogue.sql")
#: How long a catalogue read is reused.
CACHE_S = 1.0


@dataclass(frozen=True)
class TaskType:
    name: str
    label: str
    description: str
    timeout_s: float
    params_schema: Mapping[str, Any]
    max_attempts: int
    served: bool  # a live runner recorded it within RUNNER_STALE_AFTER

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskType:
        return cls(
            row["name"],
            row["label"],
            row["description"],
            row["timeout_s"],
            row["params_schema"],
            row["max_attempts"],
            bool(row["served"]),
        )

    def listing(self) -> dict[str, Any]:
        """One item of `GET /api/task-types`."""
        return {
            "name": self.name,
            "label": self.label,
            "served": self.served,
            "timeout_s": self.timeout_s,
            "description": self.description,
            "params_schema": dict(self.params_schema),
        }


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


@dataclass
class CatalogueView:
    """One read of the catalogue: the accepted types, the spawn body's schema naming them, and
    each type's params check (built when first needed)."""

    types: Mapping[str, TaskType]
    read_at: float  # time.monotonic() when the read began
    spawn_schema: SpawnRequestSchema = field(init=False)
    _checks: dict[str, ParamsCheck] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.spawn_schema = spawn_request_schema(tuple(self.types))

    def params_errors(self, task_type: str, params: Mapping[str, Any]) -> dict[str, list[str]]:
        check = self._checks.get(task_type)
        if check is None:
            check = self._checks[task_type] = ParamsCheck(
                task_type, self.types[task_type].params_schema
            )
        return check.field_errors(params)


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
            QUERIES["task_types"], {"stale_after_s": self._stale_after_s}
        )
        types = (TaskType.from_row(row) for row in rows)
        accepted = {t.name: t for t in types if not self._allowed or t.name in self._allowed}
        return CatalogueView(accepted, started)

    async def unserved(self) -> list[UnservedType]:
        """Types with pending tasks that no live runner serves (also kept in `unserved_last`)."""
        rows = await self._db.fetch_all(
            QUERIES["unserved_pending"], {"stale_after_s": self._stale_after_s}
        )
        self.unserved_last = [
            UnservedType(row["task_type"], row["pending"], row["oldest_pending_s"]) for row in rows
        ]
        return self.unserved_last
