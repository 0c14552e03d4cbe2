"""`/healthz` and `/readyz` on a real gateway: ready, degraded without Redis, 503 without
PostgreSQL (refused, or silent past the probe's timeout), never a secret in the body."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from praxiom_progress.gateway import health
from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import DISPATCHER
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import ThrowawayRedis, free_port, wait_for


async def _ready(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, await response.json()


async def test_healthz_answers_200_without_auth(api: Any) -> None:
    response = await api.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_when_postgresql_and_redis_answer(api: Any) -> None:
    await wait_for(lambda: asyncio.sleep(0, api.app[DISPATCHER].available))
    status, body = await _ready(api)
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["postgres"]["status"] == "up"
    assert body["redis"] == {
        "status": "up",
        "subscription": "up",
        "latency_ms": body["redis"]["latency_ms"],
    }
    assert 0 <= body["postgres"]["latency_ms"] < 1000


async def test_redis_down_is_degraded_but_still_ready(
    aiohttp_client: Any, settings: Settings, throwaway_redis: ThrowawayRedis
) -> None:
    throwaway_redis.stop()
    client = await aiohttp_client(create_app(settings.replace(redis_url=throwaway_redis.url)))
    status, body = await _ready(client)
    assert status == 200, body
    assert body["status"] == "degraded"
    assert body["postgres"]["status"] == "up"
    assert body["redis"]["status"] == "down"
    assert body["redis"]["subscription"] == "down"
    assert str(throwaway_redis.port) not in str(body)


async def test_postgresql_refusing_connections_is_503(
    aiohttp_client: Any, settings: Settings
) -> None:
    url = f"postgresql://praxiom:s3cret@127.0.0.1:{free_port()}/praxiom"
    client = await aiohttp_client(create_app(settings.replace(database_url=url)))
    status, body = await _ready(client)
    assert status == 503, body
    assert body["status"] == "unavailable"
    assert body["postgres"]["status"] == "down"
    assert "s3cret" not in str(body) and "praxiom@" not in str(body)
    assert (await client.get("/healthz")).status == 200  # alive all the same


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word (a hung PostgreSQL)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_hung_postgresql_is_503_within_the_probe_timeout(
    aiohttp_client: Any, settings: Settings
) -> None:
    async with _silent_server() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/praxiom"
        client = await aiohttp_client(create_app(settings.replace(database_url=url)))
        started = time.monotonic()
        status, body = await _ready(client)
        elapsed = time.monotonic() - started
    assert status == 503, body
    assert body["postgres"]["reason"] == "timeout"
    assert health.READY_TIMEOUT_S <= elapsed < health.READY_TIMEOUT_S + 1.0
