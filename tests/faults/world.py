"""The fault suite's world: its own PostgreSQL and Redis on private ports, and the gateway
and runner processes a scenario (or the soak run) asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from praxiom_progress.taskstate.channels import TASK_PENDING_NOTIFY
from tests.faults.procs import REPO, GatewayProcess, RunnerProcess
from tests.faults.servers import ThrowawayPostgres, ThrowawayRedis

#: Every interval shrunk so each scenario takes seconds; the behaviour is the production one.
FAST_ENV = {
    "SSE_POLL_INTERVAL": "1",
    "SSE_IDLE_TIMEOUT": "5",
    "SSE_PING_INTERVAL": "2",
    "SSE_RETRY": "0.5",
    "RUNNER_HEARTBEAT_INTERVAL": "0.5",
    "RUNNER_STALE_AFTER": "3",
    "RUNNER_REAPER_INTERVAL": "1",
    "RUNNER_POLL_INTERVAL": "1",
    "RUNNER_SHUTDOWN_GRACE": "2",
    "RUNNER_CONCURRENCY": "60",
    "DATABASE_TIMEOUT": "5",
    "DATABASE_POOL_SIZE": "10",
    "RUNNER_TASK_MODULES": "praxiom_progress.runner.builtin,tests.faults.task_types",
    "LOG_LEVEL": "WARNING",
    # The suite's clients stand for many users but share one token: lift the per-user cap.
    "STREAMS_PER_PRINCIPAL": "100000",
}


@dataclass
class Servers:
    postgres: ThrowawayPostgres
    redis: ThrowawayRedis
    database_url: str
    token: str
    workspace_id: str
    workdir: Path


def _praxiom(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "praxiom_progress.cli.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"praxiom-progress {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def base_env(servers: Servers) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSE_", "RUNNER_"))}
    env.update(FAST_ENV)
    env.update(
        {
            "DATABASE_URL": servers.database_url,
            "REDIS_URL": servers.redis.url,
            "PYTHONPATH": str(REPO),
            "LOG_FORMAT": "text",
        }
    )
    return env


@contextmanager
def running_servers() -> Iterator[Servers]:
    """PostgreSQL (schema applied, one token) and Redis of our own, removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="praxiom-faults-"))
    postgres = ThrowawayPostgres(workdir / "pg")
    redis = ThrowawayRedis(workdir)
    try:
        postgres.init()
        postgres.start()
        redis.start()
        url = postgres.url.rsplit("/", 1)[0] + "/praxiom_faults"
        partial = Servers(postgres, redis, url, "", "", workdir)
        env = base_env(partial)
        _praxiom(env, "migrate")
        issued = json.loads(_praxiom(env, "token", "create", "--workspace", "faults",
                                     "--user", "chaos", "--json"))  # fmt: skip
        yield Servers(postgres, redis, url, issued["token"], issued["workspace_id"], workdir)
    finally:
        redis.stop()
        postgres.destroy()


class Faults:
    """One test's processes and tasks; everything it started is killed at the end."""

    def __init__(self, servers: Servers, log_dir: Path) -> None:
        self.servers = servers
        self.log_dir = log_dir
        self.processes: list[GatewayProcess | RunnerProcess] = []

    @property
    def token(self) -> str:
        return self.servers.token

    def env(self, **overrides: str) -> dict[str, str]:
        return {**base_env(self.servers), **overrides}

    def gateway(self, **env: str) -> GatewayProcess:
        name = f"gateway-{len(self.processes)}.log"
        process = GatewayProcess(self.env(**env), self.log_dir / name)
        process.start()
        self.processes.append(process)
        process.wait_healthy()
        return process

    def runner(self, **env: str) -> RunnerProcess:
        process = RunnerProcess(self.env(**env), self.log_dir / f"runner-{len(self.processes)}.log")
        process.start()
        self.processes.append(process)
        process.wait_healthy()
        return process

    def connect(self) -> Any:
        conn = psycopg2.connect(self.servers.database_url)
        conn.autocommit = True
        return conn

    def spawn(self, task_type: str, count: int, **params: Any) -> list[str]:
        """Insert `count` pending tasks in one statement and wake the runners."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO background_tasks (workspace_id, task_type, params) "
                "SELECT %s, %s, %s FROM generate_series(1, %s) RETURNING id",
                (self.servers.workspace_id, task_type, psycopg2.extras.Json(params), count),
            )
            ids = [str(row[0]) for row in cur.fetchall()]
            cur.execute("SELECT pg_notify(%s, '')", (TASK_PENDING_NOTIFY,))
        return ids

    def rows(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        with (
            self.connect() as conn,
            conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur,
        ):
            cur.execute("SELECT * FROM background_tasks WHERE id = ANY(%s::uuid[])", (task_ids,))
            return {str(row["id"]): dict(row) for row in cur.fetchall()}

    def all_task_ids(self) -> list[str]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM background_tasks")
            return [str(row[0]) for row in cur.fetchall()]

    def statuses(self, task_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows(task_ids).values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def close(self) -> None:
        for process in self.processes:
            process.kill()
