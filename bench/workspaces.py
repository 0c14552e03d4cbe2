"""The workspace-stream scenario: W workspaces of T running tasks each, every task updated
once a second (published on its task's channel and its workspace's, as the runner does),
watched by W workspace streams (`GET /api/workspaces/{id}/progress`), side by side with the
same load watched as W x T task streams. Delivered %, publish-to-receive, the gateway's CPU
and its memory per stream, for both.

`python -m bench --workspaces` runs it alone (with BENCH_QUICK=1: 20 workspaces, 3 s) and
prints its table; `make bench` runs it too and puts the table in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from bench.config import Config
from bench.fixtures import HOLDER_RUNNER_ID, Publisher, insert_tasks
from bench.procs import LoadGens, Server
from bench.profile import Profile
from bench.scenarios import Delivery, GatewayBench
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.settings import Settings

WORKSPACE_TASK_TYPE = "bench_workspace"
P99_TARGET_MS = 20.0


@dataclass
class WorkspaceFixture:
    token: str  # a user who is a member of every bench workspace
    tasks: dict[UUID, list[UUID]]  # workspace -> its running tasks
    payloads: dict[UUID, dict[str, Any]]
    workspace_of: dict[UUID, UUID]


@dataclass
class WorkspaceLoad:
    workspaces: int
    tasks_per_workspace: int
    workspace_streams: Delivery
    task_streams: Delivery
    profile: Profile | None = None  # BENCH_PROFILE=1: the workspace streams' pass again


async def prepare_workspaces(settings: Settings, workspaces: int, per: int) -> WorkspaceFixture:
    """`workspaces` workspaces of `per` running tasks, and one member of them all."""
    db = await Database.connect(settings, maxsize=10, name="praxiom-bench")
    try:
        accounts, token = AccountStore(db), ""
        for n in range(workspaces):
            issued = await accounts.create_token(workspace=f"bench-ws-{n}", user="bench-ws")
            token = token or issued.token  # a user's token acts in all its workspaces
            await insert_tasks(db, issued.workspace_id, WORKSPACE_TASK_TYPE, per)
        runner_store = RunnerStore(db)
        claimed = []
        while batch := await runner_store.claim_tasks(
            runner_id=HOLDER_RUNNER_ID, timeouts={WORKSPACE_TASK_TYPE: 86400.0}, limit=1000
        ):
            claimed.extend(batch)
    finally:
        await db.close()
    tasks: dict[UUID, list[UUID]] = {}
    workspace_of: dict[UUID, UUID] = {}
    for task in claimed:
        assert task.workspace_id is not None
        tasks.setdefault(task.workspace_id, []).append(task.id)
        workspace_of[task.id] = task.workspace_id
    payloads = {task.id: task_payload(task) for task in claimed}
    return WorkspaceFixture(token, tasks, payloads, workspace_of)


async def discard(settings: Settings) -> None:
    """Delete the scenario's tasks, so the runner scenarios after it claim among as many
    running tasks as they always did."""
    db = await Database.connect(settings, maxsize=1, name="praxiom-bench")
    try:
        await db.fetch_all(
            "DELETE FROM background_tasks WHERE task_type = %(type)s RETURNING id",
            {"type": WORKSPACE_TASK_TYPE},
        )
    finally:
        await db.close()


async def compare(
    server: Server, loadgens: LoadGens, fixture: WorkspaceFixture, publisher: Publisher,
    seconds: float, profile: bool = False,
) -> WorkspaceLoad:  # fmt: skip
    """The same updates, watched by one stream per workspace, then by one per task (with
    `profile`, the workspace streams' pass again under py-spy)."""
    task_ids = [task_id for ids in fixture.tasks.values() for task_id in ids]
    bench = GatewayBench(server, loadgens, task_ids, publisher, first_is_event=True)
    await bench.warm_up(min(200, len(task_ids)))
    paths = [f"/api/workspaces/{workspace_id}/progress" for workspace_id in fixture.tasks]
    by_workspace = await bench.deliver(task_ids, 1, 1.0, seconds, paths=paths)
    by_task = await bench.deliver(task_ids, 1, 1.0, seconds)
    per = max(len(ids) for ids in fixture.tasks.values())
    load = WorkspaceLoad(len(fixture.tasks), per, by_workspace, by_task)
    if profile:
        what = f"gateway during {len(paths)} workspace streams"
        profiled = await bench.deliver(task_ids, 1, 1.0, seconds, paths=paths, profile_what=what)
        load.profile = profiled.profile
    return load


async def measure(
    server: Server, fixture: WorkspaceFixture, redis: aioredis.Redis, cfg: Config
) -> WorkspaceLoad:
    """The scenario against a running gateway, with load generators of its own."""
    loadgens = await LoadGens.start(cfg.loadgens, server.port, fixture.token)
    try:
        publisher = Publisher(redis, fixture.payloads, fixture.workspace_of)
        return await compare(server, loadgens, fixture, publisher, cfg.seconds, cfg.profile)
    finally:
        await loadgens.stop()


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:,.{digits}f}"


def render(load: WorkspaceLoad | None) -> str:
    """The BENCHMARKS.md section (empty when the scenario did not run)."""
    if load is None:
        return ""
    ws, ts = load.workspace_streams, load.task_streams
    met = "yes" if ws.p99_ms <= P99_TARGET_MS and ws.delivered_pct >= 100.0 else "**no**"
    rows = [
        ("streams", f"{ws.streams:,}", f"{ts.streams:,}"),
        ("updates published (each task once a second)", f"{ws.published:,}", f"{ts.published:,}"),
        ("delivered (%)", _fmt(ws.delivered_pct, 2), _fmt(ts.delivered_pct, 2)),
        ("publish-to-receive p50 (ms)", _fmt(ws.p50_ms, 2), _fmt(ts.p50_ms, 2)),
        ("publish-to-receive p99 (ms)", _fmt(ws.p99_ms, 2), _fmt(ts.p99_ms, 2)),
        ("publish-to-receive max (ms)", _fmt(ws.max_ms, 2), _fmt(ts.max_ms, 2)),
        ("gateway CPU (% of a core)", _fmt(ws.server_cpu_pct), _fmt(ts.server_cpu_pct)),
        ("gateway memory per stream (KiB)", _fmt(ws.kib_per_stream), _fmt(ts.kib_per_stream)),
        ("load generators' CPU (% of a core)", _fmt(ws.loadgen_cpu_pct), _fmt(ts.loadgen_cpu_pct)),
        ("streams that failed to open", str(ws.open_failed), str(ts.open_failed)),
    ]  # fmt: skip
    body = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Workspace streams

{load.workspaces:,} workspaces of {load.tasks_per_workspace} running tasks each, every task
updated once a second (published on its task's channel and its workspace's, as the runner's
publisher does), watched by one workspace stream per workspace, then the same updates watched
by one task stream per task. Target for the workspace streams: 100 % delivered, p99
publish-to-receive ≤ {P99_TARGET_MS:g} ms: met: {met}.

| measure | {ws.streams:,} workspace streams | {ts.streams:,} task streams |
|---|---|---|
{body}
"""
