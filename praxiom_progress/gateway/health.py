"""`GET /healthz` and `GET /readyz`: for load balancers and orchestrators; no auth, no secrets.

`/healthz` says the process serves HTTP. `/readyz` says whether it can do its job: PostgreSQL
(the source of truth) must answer a trivial query within `READY_TIMEOUT_S`, or the gateway is
not ready (503). Redis is reported but never makes it unready: without it streams poll
PostgreSQL, so the gateway is only "degraded". On a Redis Cluster the subscription is up while
every channel's shard is connected, and `shards` counts the shards up and down (a primary that
failed over to its replica is no longer a shard).
`warnings` names task types whose pending tasks
no live runner serves: worth an alert, but this gateway can still do its job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from praxiom_progress.gateway.catalogue import TaskTypeCatalogue
from praxiom_progress.gateway.cluster import ClusterDispatcher
from praxiom_progress.gateway.errors import json_response
from praxiom_progress.gateway.keys import CATALOGUE, DISPATCHER, REDIS, TASK_STORE

#: Each dependency's answer must come within this; a check never outlasts a prober's timeout.
READY_TIMEOUT_S = 1.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    postgres, redis, warnings = await asyncio.gather(
        probe(app[TASK_STORE].db.fetch_one("SELECT 1")),
        probe(app[REDIS].ping()),
        _unserved_warnings(app[CATALOGUE]),
    )
    dispatcher = app[DISPATCHER]
    redis["subscription"] = "up" if dispatcher.available else "down"
    if isinstance(dispatcher, ClusterDispatcher):
        up = sum(dispatcher.shards_up.values())
        redis["shards"] = {"up": up, "down": len(dispatcher.shards_up) - up}
    if postgres["status"] != "up":
        status, code = "unavailable", 503
    elif redis["status"] != "up" or redis["subscription"] != "up":
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return json_response(
        {"status": status, "postgres": postgres, "redis": redis, "warnings": warnings},
        status=code,
    )


async def _unserved_warnings(catalogue: TaskTypeCatalogue) -> list[dict[str, Any]]:
    """A warning per type with pending tasks no live runner serves; none when unknown."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            unserved = await catalogue.unserved()
    except Exception:  # PostgreSQL down or slow: the probe above reports it
        return []
    return [u.warning() for u in unserved]


async def probe(check: Awaitable[Any]) -> dict[str, Any]:
    """`{"status": "up"|"down", "latency_ms": ...}`; why it is down, without any address."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await check
    except TimeoutError:
        result: dict[str, Any] = {"status": "down", "reason": "timeout"}
    except Exception as exc:  # the driver's own error types: it is down, whatever they are
        result = {"status": "down", "reason": type(exc).__name__}
    else:
        result = {"status": "up"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result
