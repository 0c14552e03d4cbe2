"""Fair claims across workspaces, against real PostgreSQL: one tenant's backlog never keeps
another's new task waiting past the next free slot, `WORKSPACE_MAX_RUNNING` holds across
concurrent claims, and a claim is still one statement."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from uuid import UUID

import psycopg2

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import RunnerHarness, claim_by_hand, spawn, wait_for

HOLD = "hold"
OTHER = "other"
TIMEOUTS = {HOLD: 600.0}


class HeldUntilReleased:
    """A long task: each one runs until the test releases one (in the order they wait)."""

    def __init__(self) -> None:
        self.releases: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        await self.releases.get()
        return {}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register(HOLD, self)
        return registry


async def _workspace(db: Database, name: str) -> UUID:
    return (await AccountStore(db).create_token(workspace=name, user=f"{name}-user")).workspace_id


async def _counts(db: Database, workspace_id: UUID) -> dict[str, int]:
    rows = await db.fetch_all(
        "SELECT status, count(*)::integer AS n FROM background_tasks"
        " WHERE workspace_id = %(w)s GROUP BY status",
        {"w": workspace_id},
    )
    return {row["status"]: row["n"] for row in rows}


async def _status(db: Database, task_id: UUID) -> str:
    row = await db.fetch_one(
        "SELECT status FROM background_tasks WHERE id = %(id)s", {"id": task_id}
    )
    assert row is not None
    return str(row["status"])


async def _backlog(task_store: TaskStore, workspace_id: UUID, n: int) -> list[UUID]:
    return [await spawn(task_store, workspace_id, HOLD) for _ in range(n)]


async def test_another_workspace_takes_the_next_free_slot(
    db: Database, task_store: TaskStore, runners: RunnerHarness
) -> None:
    a, b = await _workspace(db, "tenant-a"), await _workspace(db, "tenant-b")
    await _backlog(task_store, a, 50)
    hold = HeldUntilReleased()
    runners.start(hold.registry(), runner_concurrency=4)
    await wait_for(lambda: _running(db, a, 4))

    b_task = await spawn(task_store, b, HOLD)  # newer than all 50 of A's
    await asyncio.sleep(0.3)  # every slot is busy: nothing starts
    assert await _status(db, b_task) == "pending"

    hold.releases.put_nowait(None)  # one of A's ends: its slot goes to B, not to A's backlog
    await wait_for(lambda: _is(db, b_task, "running"))
    assert await _counts(db, a) == {"running": 3, "completed": 1, "pending": 46}


async def test_a_workspace_at_its_cap_leaves_the_free_slots_to_others(
    db: Database, task_store: TaskStore, runners: RunnerHarness
) -> None:
    a, b = await _workspace(db, "tenant-a"), await _workspace(db, "tenant-b")
    await _backlog(task_store, a, 50)
    hold = HeldUntilReleased()
    runners.start(hold.registry(), runner_concurrency=4, workspace_max_running=3)
    await wait_for(lambda: _running(db, a, 3))
    await asyncio.sleep(0.3)  # a slot is free, yet A stays at its cap
    assert await _counts(db, a) == {"running": 3, "pending": 47}

    b_task = await spawn(task_store, b, HOLD)  # starts at once: nothing has to end
    await wait_for(lambda: _is(db, b_task, "running"), timeout_s=2.0)
    hold.releases.put_nowait(None)  # A ends one and takes its place back, still at 3
    await wait_for(lambda: _has(db, a, {"running": 3, "completed": 1, "pending": 46}))


async def test_one_claim_fills_the_emptiest_workspaces_first(
    db: Database, task_store: TaskStore
) -> None:
    a, b, c = [await _workspace(db, name) for name in ("ws-a", "ws-b", "ws-c")]
    for workspace_id, running in ((a, 3), (b, 1)):
        for task_id in await _backlog(task_store, workspace_id, running):
            await claim_by_hand(
                db, task_id, runner_id="other", started_ago_s=0, beat_ago_s=0, timeout_s=600
            )
    for workspace_id in (a, b, c):  # A's oldest, then B's, then C's
        await _backlog(task_store, workspace_id, 5)

    claimed = await RunnerStore(db).claim_tasks(runner_id="r", timeouts=TIMEOUTS, limit=6)

    taken = [task.workspace_id for task in claimed]
    # Running A 3, B 1, C 0: C, B, C, B, C (oldest first between B and C when level), then,
    # all three at 3, the sixth to the oldest waiting task, A's.
    assert (taken.count(a), taken.count(b), taken.count(c)) == (1, 2, 3)
    assert all(task.phase == "running" and task.attempt == 1 for task in claimed)


async def test_the_cap_holds_against_concurrent_claims(db: Database, task_store: TaskStore) -> None:
    """Runners serving different types each see the other's claims (claims serialize on one
    advisory lock), so together they never take a workspace past its cap."""
    a, b = await _workspace(db, "tenant-a"), await _workspace(db, "tenant-b")
    for workspace_id in (a, b):
        for task_type in (HOLD, OTHER) * 30:
            await spawn(task_store, workspace_id, task_type)
    store = RunnerStore(db)

    rounds = await asyncio.gather(
        *(
            store.claim_tasks(
                runner_id=f"r{i}",
                timeouts={(HOLD, OTHER)[i % 2]: 600.0},
                limit=3,
                workspace_cap=7,
            )
            for i in range(16)
        )
    )

    claimed = [task.id for tasks in rounds for task in tasks]
    assert len(claimed) == len(set(claimed)) == 14  # nobody claims a task twice
    assert (await _counts(db, a))["running"] == 7
    assert (await _counts(db, b))["running"] == 7


async def test_a_claim_is_one_statement(settings: Settings, task_store: TaskStore) -> None:
    statements: list[float] = []
    db = await Database.connect(settings, on_query=statements.append)
    try:
        a, b = await _workspace(db, "tenant-a"), await _workspace(db, "tenant-b")
        await _backlog(task_store, a, 5)
        await _backlog(task_store, b, 5)
        statements.clear()
        claimed = await RunnerStore(db).claim_tasks(
            runner_id="r", timeouts=TIMEOUTS, limit=4, workspace_cap=2
        )
    finally:
        await db.close()
    assert len(statements) == 1
    assert sorted(str(task.workspace_id) for task in claimed) == sorted([str(a), str(b)] * 2)


def test_the_claim_stays_fast_on_a_realistic_table(settings: Settings) -> None:
    """Thousands of pending tasks over tens of workspaces, on top of a long history: a claim
    walks one index probe per workspace, not the backlog."""
    conn = psycopg2.connect(settings.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(_REALISTIC_TABLE)
        durations = []
        for _ in range(20):
            cur.execute("BEGIN")
            started = time.perf_counter()
            cur.execute(
                "SELECT count(*) FROM praxiom_claim_tasks('r', %s, '{}', 10, 0)",
                ('{"hold": 600}',),
            )
            durations.append(time.perf_counter() - started)
            assert cur.fetchone() == (10,)
            cur.execute("ROLLBACK")
    conn.close()
    assert statistics.median(durations) < 0.05, durations


# 30 workspaces; 100,000 finished tasks; 5,000 pending (2,000 of them in one workspace, every
# seventh of a type this runner does not serve); 100 running in ten of the workspaces.
_REALISTIC_TABLE = """
INSERT INTO workspaces (name) SELECT 'bulk-' || g FROM generate_series(1, 30) g;
CREATE TEMP TABLE bulk AS
    SELECT id, row_number() OVER (ORDER BY name) AS n FROM workspaces WHERE name LIKE 'bulk-%';
INSERT INTO background_tasks (workspace_id, task_type, status, completed_at, created_at)
SELECT bulk.id, 'hold', 'completed', now(), now() - interval '10 days' + g * interval '1 second'
  FROM generate_series(1, 100000) g JOIN bulk ON bulk.n = 1 + g % 30;
INSERT INTO background_tasks (workspace_id, task_type, created_at)
SELECT bulk.id, CASE WHEN g % 7 = 0 THEN 'other' ELSE 'hold' END,
       now() - interval '1 hour' + g * interval '10 ms'
  FROM generate_series(1, 5000) g
  JOIN bulk ON bulk.n = CASE WHEN g <= 2000 THEN 1 ELSE 1 + g % 30 END;
INSERT INTO background_tasks (workspace_id, task_type, status, runner_id, claim_token,
                              started_at, heartbeat_at, timeout_s)
SELECT bulk.id, 'hold', 'running', 'other', gen_random_uuid(), now(), now(), 600
  FROM generate_series(1, 100) g JOIN bulk ON bulk.n = 1 + g % 10;
ANALYZE background_tasks;
"""


async def _running(db: Database, workspace_id: UUID, n: int) -> bool:
    return (await _counts(db, workspace_id)).get("running") == n


async def _is(db: Database, task_id: UUID, status: str) -> bool:
    return await _status(db, task_id) == status


async def _has(db: Database, workspace_id: UUID, counts: dict[str, int]) -> bool:
    return await _counts(db, workspace_id) == counts
