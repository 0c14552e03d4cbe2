"""The runner scenarios: report_progress rate (every report written, and throttled by
RUNNER_PROGRESS_MIN_INTERVAL), claim-and-complete throughput, spawn-to-running.

Each runs one runner process (`bench.runnerproc`) against tasks this harness inserts with
`TaskStore.insert_task`, and is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from bench.fixtures import insert_tasks
from bench.limits import Pgbench
from bench.procs import REPO, CpuMeter, percentile
from bench.profile import Profile, record
from bench.transactions import CommitToClaim, commit_to_claim
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore

WARM_UP_S = 2.0


@dataclass
class ReportRate:
    concurrency: int
    per_s: float
    runner_cpu_pct: float
    profile: Profile | None = None
    statements: int = 2  # RUNNER_PROGRESS_STATEMENTS: report_progress statements in flight
    min_interval_s: float = 0.0  # RUNNER_PROGRESS_MIN_INTERVAL; 0: every report written
    written_per_s: float = 0.0  # progress rows written per second meanwhile


@dataclass
class Drain:
    backlog: int
    completed: int
    seconds: float
    per_s: float
    runner_cpu_pct: float


@dataclass
class SpawnLatency:
    rate_per_s: float
    spawned: int
    started: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class RunnerBench:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.env = dict(os.environ, DATABASE_URL=settings.database_url,
                        REDIS_URL=settings.redis_url, LOG_LEVEL="WARNING",
                        PYTHONPATH=str(REPO))  # fmt: skip
        self.workspace_id: UUID | None = None

    async def _workspace(self) -> UUID:
        if self.workspace_id is None:
            issued = await AccountStore(self.db).create_token(workspace="bench", user="bench")
            self.workspace_id = issued.workspace_id
        return self.workspace_id

    async def _child(self, *args: str, **env: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.runnerproc", *args, cwd=REPO, env={**self.env, **env},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    @staticmethod
    async def _answer(child: asyncio.subprocess.Process, timeout_s: float) -> dict[str, Any]:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"runner process exited with {await child.wait()}")
        return dict(json.loads(line))

    async def report_rate(
        self,
        seconds: float,
        *,
        statements: int = 2,
        profile: bool = False,
        min_interval_s: float = 0.0,
    ) -> ReportRate:
        """`RUNNER_CONCURRENCY` tasks calling report_progress as fast as they can, with
        `statements` report_progress statements in flight at once; each report is written
        unless `min_interval_s` (the throttle) keeps only the newest of each interval."""
        concurrency = self.settings.runner_concurrency
        await insert_tasks(self.db, await self._workspace(), "bench_reporter", concurrency)
        from_ns = time.monotonic_ns() + int(WARM_UP_S * 1e9)
        until_ns = from_ns + int(seconds * 1e9)
        child = await self._child(
            "report",
            f"--from-ns={from_ns}",
            f"--until-ns={until_ns}",
            RUNNER_PROGRESS_STATEMENTS=str(statements),
            RUNNER_PROGRESS_MIN_INTERVAL=str(min_interval_s),
        )
        await asyncio.sleep(max(0.0, (from_ns - time.monotonic_ns()) / 1e9))
        meter = CpuMeter([child.pid])
        profiling = (
            asyncio.create_task(record(child.pid, seconds, "runner during report_progress"))
            if profile
            else None
        )
        answer = await self._answer(child, WARM_UP_S + seconds + 30)
        cpu = meter.percent()
        await child.wait()
        return ReportRate(
            concurrency,
            answer["per_s"],
            cpu,
            await profiling if profiling is not None else None,
            statements,
            min_interval_s,
            answer["written_per_s"],
        )

    async def throttled(self, seconds: float) -> ReportRate:
        """The same reporters under the default RUNNER_PROGRESS_MIN_INTERVAL: reports accepted
        against rows written."""
        interval_s = Settings().runner_progress_min_interval_s
        return await self.report_rate(seconds, min_interval_s=interval_s)

    async def drain(self, backlog: int, timeout_s: float = 40.0) -> Drain:
        """A backlog of no-op tasks, one runner: claimed and completed per second."""
        await insert_tasks(self.db, await self._workspace(), "bench_noop", backlog)
        child = await self._child("drain", f"--expect={backlog}", f"--timeout-s={timeout_s}")
        meter = CpuMeter([child.pid])
        answer = await self._answer(child, timeout_s + 30)
        cpu = meter.percent()
        await child.wait()
        return Drain(backlog, answer["completed"], answer["seconds"], answer["per_s"], cpu)

    async def spawn_latency(self, rate_per_s: float, seconds: float) -> SpawnLatency:
        """Spawns at a steady rate while one runner waits; `started_at - created_at` per row."""
        workspace_id = await self._workspace()
        child = await self._child("serve")
        await self._answer(child, 30)  # ready: its LISTEN is up
        store = TaskStore(self.db)
        ids: list[UUID] = []
        count = int(rate_per_s * seconds)
        started = time.monotonic()
        for k in range(count):
            await asyncio.sleep(max(0.0, started + k / rate_per_s - time.monotonic()))
            task = await store.insert_task(
                workspace_id=workspace_id, task_type="bench_noop", params={}
            )
            ids.append(task.id)
        query = (
            "SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms"
            " FROM background_tasks WHERE id = ANY(%(ids)s::uuid[]) AND started_at IS NOT NULL"
        )
        deadline = time.monotonic() + 5
        rows = await self.db.fetch_all(query, {"ids": [str(i) for i in ids]})
        while len(rows) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            rows = await self.db.fetch_all(query, {"ids": [str(i) for i in ids]})
        assert child.stdin is not None
        child.stdin.write(b"stop\n")
        await child.stdin.drain()
        await self._answer(child, 30)
        await child.wait()
        latencies = sorted(float(row["ms"]) for row in rows)
        return SpawnLatency(
            rate_per_s,
            count,
            len(rows),
            percentile(latencies, 50),
            percentile(latencies, 99),
            latencies[-1] if latencies else float("nan"),
        )

    async def transaction_spawns(self, count: int, rate_per_s: float) -> list[CommitToClaim]:
        """`count` spawns inside the application's own transactions, with `spawn` (aiopg) and
        then `spawn_sync` (psycopg2), while one runner waits: commit to claim."""
        workspace_id = await self._workspace()
        child = await self._child("serve")
        await self._answer(child, 30)  # ready: its LISTEN is up
        try:
            url = self.settings.database_url
            return [
                await commit_to_claim(
                    self.db, url, workspace_id, sync=sync, count=count, rate_per_s=rate_per_s
                )
                for sync in (False, True)
            ]
        finally:
            assert child.stdin is not None
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
            await self._answer(child, 30)
            await child.wait()


def runner_figures(rate: ReportRate, drain: Drain, pgbench: Pgbench) -> str:
    """`python -m bench --runner`'s answer: the two throughput figures and their targets."""
    tps = pgbench.tps or float("nan")
    return "\n".join(
        [
            f"report_progress/s, {rate.concurrency} tasks: {rate.per_s:,.0f} "
            f"= {rate.per_s / tps:.2f} of pgbench (target 0.50); "
            f"runner CPU {rate.runner_cpu_pct:.0f} %",
            f"no-op tasks/s, one runner: {drain.per_s:,.0f} ({drain.completed:,} of "
            f"{drain.backlog:,} in {drain.seconds:.1f} s) = {drain.per_s / tps:.3f} of pgbench "
            f"(target 1,000/s); runner CPU {drain.runner_cpu_pct:.0f} %",
            f"pgbench single-row UPDATE, {pgbench.clients} clients: {pgbench.tps:,.0f} TPS",
        ]
    )
