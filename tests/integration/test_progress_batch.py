"""Group commit of report_progress against real PostgreSQL and Redis: reports made together
leave in one statement, each caller learns its own outcome, and nothing is lost or reordered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg2
import pytest

from praxiom_progress.runner.batch import ProgressBatcher, Report
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import ProgressRecorder, claim_by_hand, spawn, wait_for


async def running_tasks(db: Database, store: TaskStore, workspace_id: UUID, n: int) -> list[Task]:
    tasks = []
    for _ in range(n):
        task_id = await spawn(store, workspace_id, "research")
        await claim_by_hand(db, task_id, runner_id="r", started_ago_s=0, beat_ago_s=0, timeout_s=60)
        task = await RunnerStore(db).get_task(task_id)
        assert task is not None
        tasks.append(task)
    return tasks


class CountingStore:
    """The real store, counting the statements it runs."""

    def __init__(self, store: RunnerStore) -> None:
        self.store = store
        self.statements: list[int] = []

    async def report_progress(self, reports: Sequence[Report]) -> list[Task]:
        self.statements.append(len(reports))
        return await self.store.report_progress(reports)


def report(task: Task, pct: int, phase: str = "working") -> Report:
    assert task.claim_token is not None
    return Report(task.id, task.claim_token, phase, pct, f"at {pct}")


async def test_reports_made_together_share_one_statement_and_all_are_published(
    db: Database,
    task_store: TaskStore,
    workspace_id: UUID,
    publisher: ProgressPublisher,
    recorder: ProgressRecorder,
) -> None:
    rows = await running_tasks(db, task_store, workspace_id, 8)
    store = CountingStore(RunnerStore(db))
    batcher = ProgressBatcher(store.report_progress, TaskWriter(publisher), in_flight=1)
    written = await asyncio.gather(*(batcher.submit(report(r, 10 + i)) for i, r in enumerate(rows)))

    assert store.statements == [8]  # made in one loop step: written in one statement
    for i, (row, new) in enumerate(zip(rows, written, strict=True)):
        assert new is not None and new.id == row.id
        assert new.progress_pct == 10 + i and new.version == row.version + 1
        assert new.result_data["progress_pct"] == 10 + i
        stored = await RunnerStore(db).get_task(row.id)
        assert stored is not None and stored.message == f"at {10 + i}"
    await wait_for(lambda: asyncio.sleep(0, all(recorder.of(r.id) for r in rows)), 5)
    for i, row in enumerate(rows):
        assert [p["progress_pct"] for p in recorder.of(row.id)] == [10 + i]


async def test_a_task_no_longer_held_gets_none_and_the_others_are_written(
    db: Database, task_store: TaskStore, workspace_id: UUID, publisher: ProgressPublisher
) -> None:
    rows = await running_tasks(db, task_store, workspace_id, 3)
    await task_store.cancel_task(rows[1].id)
    batcher = ProgressBatcher(RunnerStore(db).report_progress, TaskWriter(publisher))
    written = await asyncio.gather(*(batcher.submit(report(r, 50)) for r in rows))
    assert written[1] is None
    assert written[0] is not None and written[2] is not None
    cancelled = await RunnerStore(db).get_task(rows[1].id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.progress_pct != 50


async def test_one_task_s_reports_are_written_in_the_order_they_were_made(
    db: Database, task_store: TaskStore, workspace_id: UUID, publisher: ProgressPublisher
) -> None:
    [row] = await running_tasks(db, task_store, workspace_id, 1)
    store = CountingStore(RunnerStore(db))
    batcher = ProgressBatcher(store.report_progress, TaskWriter(publisher), in_flight=2)
    written = await asyncio.gather(*(batcher.submit(report(row, pct)) for pct in (1, 2, 3, 4)))
    assert [w.progress_pct for w in written if w] == [1, 2, 3, 4]
    assert [w.version for w in written if w] == [row.version + n for n in (1, 2, 3, 4)]
    assert store.statements == [1, 1, 1, 1]  # never two of one task in a statement
    stored = await RunnerStore(db).get_task(row.id)
    assert stored is not None and stored.progress_pct == 4


async def test_a_failed_write_reaches_every_caller_of_its_batch(
    db: Database, task_store: TaskStore, workspace_id: UUID, publisher: ProgressPublisher
) -> None:
    rows = await running_tasks(db, task_store, workspace_id, 3)
    store = RunnerStore(db)
    down = True

    async def flaky(reports: Sequence[Report]) -> list[Task]:
        if down:
            raise StoreUnavailable("PostgreSQL is down")
        return await store.report_progress(reports)

    batcher = ProgressBatcher(flaky, TaskWriter(publisher))
    results = await asyncio.gather(
        *(batcher.submit(report(r, 5)) for r in rows), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    # The same batcher carries on once PostgreSQL is back, for the very same tasks (keys):
    # a failed statement leaves none of them busy.
    down = False
    async with asyncio.timeout(10):
        written = await asyncio.gather(*(batcher.submit(report(r, 6)) for r in rows))
    assert [w.progress_pct if w else None for w in written] == [6, 6, 6]
    for row in rows:
        stored = await store.get_task(row.id)
        assert stored is not None and stored.progress_pct == 6


@pytest.fixture
async def publisher(redis_client: Any) -> ProgressPublisher:
    return ProgressPublisher(redis_client)


async def test_progress_and_heartbeats_update_a_running_row_in_place(
    db: Database, task_store: TaskStore, workspace_id: UUID, settings: Settings
) -> None:
    """No index covers what a report or a heartbeat writes (schema.sql), so PostgreSQL
    updates the row in place (HOT): no index entry per report, most of a report's cost. Read
    from the transaction's own statistics, exact within it."""
    [task] = await running_tasks(db, task_store, workspace_id, 1)
    conn = psycopg2.connect(settings.database_url)
    try:
        with conn.cursor() as cur:  # one transaction, rolled back
            for pct in (10, 20, 30):
                cur.execute(
                    "SELECT version FROM praxiom_report_progress(%s::uuid[], %s::uuid[],"
                    " %s::text[], %s::integer[], %s::text[])",
                    ([str(task.id)], [str(task.claim_token)], ["working"], [pct], ["m"]),
                )
                assert cur.fetchone() is not None
            cur.execute(
                "UPDATE background_tasks SET heartbeat_at = now() WHERE id = %s", (str(task.id),)
            )
            cur.execute(
                "SELECT pg_stat_get_xact_tuples_updated(r), pg_stat_get_xact_tuples_hot_updated(r)"
                "  FROM CAST('background_tasks' AS regclass) AS r"
            )
            assert cur.fetchone() == (4, 4)
            cur.execute(  # a status change does move the row's index entries
                "UPDATE background_tasks SET status = 'cancelled', completed_at = now()"
                " WHERE id = %s",
                (str(task.id),),
            )
            cur.execute(
                "SELECT pg_stat_get_xact_tuples_updated(r), pg_stat_get_xact_tuples_hot_updated(r)"
                "  FROM CAST('background_tasks' AS regclass) AS r"
            )
            assert cur.fetchone() == (5, 4)
        conn.rollback()
    finally:
        conn.close()
