"""Our gateway in variants (`NAME=VAR=VALUE,...`) and the floor baseline, each started on a
port of its own with its own load generators: what `--tails` and `--idle` share for their
interleaved A/B runs. A variant's BENCH_CHECKOUT=/path runs another checkout's gateway (a
worktree of an earlier commit) with this harness."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.config import Config
from bench.fixtures import Fixture, Publisher
from bench.procs import REPO, LoadGens, Server, free_port, start, stop, wait_listening
from bench.scenarios import GatewayBench
from praxiom_progress.taskstate.settings import Settings

FLOOR = "floor"
OURS_ARGS = ["-m", "praxiom_progress.cli.main", "gateway"]


def variants(args: list[str]) -> list[tuple[str, dict[str, str]]]:
    """`NAME=VAR=VALUE,VAR=VALUE` arguments; none: our gateway as configured."""
    found: list[tuple[str, dict[str, str]]] = []
    for arg in args or ["ours="]:
        name, _, rest = arg.partition("=")
        env = dict(pair.split("=", 1) for pair in rest.split(",") if "=" in pair)
        found.append((name, env))
    return found


def base_env(settings: Settings) -> dict[str, str]:
    """The servers' environment: the bench's database and Redis, no per-principal limits."""
    return dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
                LOG_LEVEL="WARNING", PYTHONPATH=str(REPO),
                STREAMS_PER_PRINCIPAL="1000000", GATEWAY_MAX_STREAMS="1000000")  # fmt: skip


def floor_args(settings: Settings) -> list[str]:
    return ["-m", "bench.floor_gateway", "--port", "{port}", "--redis-url", settings.redis_url]


@asynccontextmanager
async def serving(
    name: str, args: list[str], env: dict[str, str], fixture: Fixture, publisher: Publisher,
    cfg: Config,
) -> AsyncIterator[GatewayBench]:  # fmt: skip
    """One server (ours when `name` is not FLOOR) and its load generators, for one scenario."""
    port = free_port()
    checkout = Path(env.pop("BENCH_CHECKOUT", str(REPO)))
    env = dict(env, GATEWAY_PORT=str(port), PYTHONPATH=str(checkout))
    process = start([*args[:2], *[a.replace("{port}", str(port)) for a in args[2:]]], env, checkout)
    try:
        await wait_listening(port, process)
        ours = name != FLOOR
        loadgens = await LoadGens.start(cfg.loadgens, port, fixture.token if ours else "")
        try:
            yield GatewayBench(
                Server(name, port, process), loadgens, fixture.task_ids, publisher,
                first_is_event=ours,
            )  # fmt: skip
        finally:
            await loadgens.stop()
    finally:
        stop(process)
