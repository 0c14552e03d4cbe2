"""The runner's small HTTP port: `/healthz`, `/readyz` and `/metrics`.

The runner serves no client traffic; this port is for orchestrators and
Prometheus only (`RUNNER_METRICS_HOST:RUNNER_METRICS_PORT`, 0 turns it off).
`/readyz` is 200 while PostgreSQL answers, since without it the runner can do
nothing; Redis down only delays streams (they poll), so it is reported as
`degraded` and still 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from praxiom_progress.runner.metrics import RunnerMetrics
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.errors import StoreUnavailable

#: How long a readiness probe waits for each server.
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Probes:
    """What the endpoints look at."""

    metrics: RunnerMetrics
    db: Database
    redis: aioredis.Redis | RedisCluster


PROBES = web.AppKey("probes", Probes)


class PortUnavailable(Exception):
    """The health/metrics port cannot be opened (taken, or not an address of this host)."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _postgres_up(db: Database) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await db.fetch_one("SELECT 1")
    except (StoreUnavailable, TimeoutError):
        return False
    return True


async def _redis_up(redis: aioredis.Redis | RedisCluster) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await redis.ping()
    except (RedisError, OSError, TimeoutError):
        return False
    return True


async def readyz(request: web.Request) -> web.Response:
    probes = request.app[PROBES]
    postgres, redis = await asyncio.gather(_postgres_up(probes.db), _redis_up(probes.redis))
    if not postgres:
        status = "unavailable"
    else:
        status = "ready" if redis else "degraded"
    body = {
        "status": status,
        "postgres": "up" if postgres else "down",
        "redis": "up" if redis else "down",
    }
    return web.json_response(body, status=200 if postgres else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[PROBES].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(probes: Probes) -> web.Application:
    app = web.Application()
    app[PROBES] = probes
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def serving(probes: Probes, host: str, port: int) -> AsyncIterator[web.AppRunner]:
    """Listen on `host:port` until exit; `PortUnavailable` when it cannot."""
    runner = web.AppRunner(create_app(probes), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise PortUnavailable(
                f"cannot listen on {host}:{port} (RUNNER_METRICS_PORT): {exc.strerror or exc}"
            ) from exc
        yield runner
    finally:
        await runner.cleanup()
