"""`GET /metrics` on the gateway and on the runner's small port, after a real task ran through a
real runner process and a live gateway; and the runner's `/healthz` and `/readyz`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import aiohttp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from praxiom_progress.gateway.keys import METRICS
from praxiom_progress.runner.http import Probes, create_app
from praxiom_progress.runner.metrics import RunnerMetrics
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import LiveGateway, RunnerProcess, bearer, free_port, wait_for
from tests.sse_client import events, stream_timeout

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} is not exported"
    return samples[key]


async def wait_for_runner_port(
    session: aiohttp.ClientSession, url: str, proc: RunnerProcess
) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.proc.poll() is None, proc.log()
        try:
            async with session.get(f"{url}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "alive"}
                return
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_both_processes_export_their_metrics_after_a_task_ran(
    live_gateway: LiveGateway,
    member: IssuedToken,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    port = free_port()
    runner_url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=stream_timeout()) as session:
        async with session.post(
            f"{live_gateway.url}/api/tasks/spawn",
            json={"task_type": "validation_kit", "params": {"step_seconds": 0.05}},
            headers=bearer(member.token),
        ) as response:
            assert response.status == 202
            task_id = (await response.json())["task_id"]
        async with session.get(
            f"{live_gateway.url}/api/tasks/{task_id}/progress", headers=bearer(member.token)
        ) as response:
            received = []
            async for event in events(response):
                received.append(event.payload)
                if len(received) == 1:  # the task starts only once we are watching
                    runner = runner_processes(RUNNER_METRICS_PORT=str(port))
        assert received[0]["status"] == "pending" and received[-1]["status"] == "completed"
        await wait_for_runner_port(session, runner_url, runner)
        for headers, path in [
            ({}, f"/api/tasks/{task_id}/progress"),  # no token: 401
            (bearer(member.token), f"/api/tasks/{uuid4()}/progress"),  # 404
        ]:
            async with session.get(live_gateway.url + path, headers=headers) as response:
                assert response.status in (401, 404)
        async with session.get(
            f"{live_gateway.url}/api/tasks/{task_id}/progress",
            headers={**bearer(member.token), "Last-Event-ID": str(received[-1]["version"])},
        ) as response:
            assert response.status == 204

        async def stream_closed() -> Samples | None:
            samples = await scrape(session, f"{live_gateway.url}/metrics")
            return samples if value(samples, "praxiom_gateway_streams_open") == 0 else None

        gateway = await wait_for(stream_closed, timeout_s=5)
        runner_samples = await scrape(session, f"{runner_url}/metrics")
        async with session.get(f"{runner_url}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ready", "postgres": "up", "redis": "up"}

    opens = "praxiom_gateway_stream_opens_total"
    assert value(gateway, opens, result="200") == 1
    assert value(gateway, opens, result="401") == 1
    assert value(gateway, opens, result="404") == 1
    assert value(gateway, opens, result="204") == 1
    assert value(gateway, opens, result="403") == 0
    assert value(gateway, "praxiom_gateway_streams_polling") == 0
    assert value(gateway, "praxiom_gateway_events_sent_total") == len(received)
    assert value(gateway, "praxiom_gateway_events_coalesced_total") == 0
    assert value(gateway, "praxiom_gateway_redis_subscription_up") == 1
    assert value(gateway, "praxiom_gateway_redis_subscription_connects_total") == 1
    # Every event after the snapshot came through pub/sub; each was sampled (50 ms apart).
    lag_count = value(gateway, "praxiom_gateway_publish_to_send_lag_seconds_count")
    assert 1 <= lag_count <= len(received) - 1
    assert 0 < value(gateway, "praxiom_gateway_publish_to_send_lag_seconds_sum") < lag_count
    assert value(gateway, "praxiom_gateway_publish_to_send_lag_seconds_bucket", le="+Inf") == (
        lag_count
    )
    # spawn (principal, insert), then one authorizing read per stream request with a token
    assert value(gateway, "praxiom_db_query_duration_seconds_count") >= 5

    assert value(runner_samples, "praxiom_runner_tasks_claimed_total") == 1
    assert value(runner_samples, "praxiom_runner_tasks_completed_total") == 1
    for name in ("failed", "timed_out", "cancelled", "reaped", "handed_back", "retried"):
        assert value(runner_samples, f"praxiom_runner_tasks_{name}_total") == 0
    assert value(runner_samples, "praxiom_runner_tasks_running") == 0
    # validation_kit reports three phases before it completes.
    assert value(runner_samples, "praxiom_runner_report_progress_duration_seconds_count") == 3
    # Three phases: each written at once, none kept by the throttle.
    assert value(runner_samples, "praxiom_runner_progress_reports_total") == 3
    assert value(runner_samples, "praxiom_runner_progress_writes_total") == 3
    assert value(runner_samples, "praxiom_runner_publish_failures_total") == 0
    # claim, 3 phases, end: each on the task's channel and on its workspace's
    assert value(runner_samples, "praxiom_runner_publishes_total") == 10
    assert value(runner_samples, "praxiom_db_query_duration_seconds_count") >= 5


async def test_readyz_is_503_without_postgres_and_degraded_without_redis(
    aiohttp_client: Any, settings: Settings
) -> None:
    """Servers that are not there: a closed port for each (nothing shared is touched)."""
    dead_db = await Database.connect(
        settings.replace(
            database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x", database_timeout_s=1
        ),
        minsize=0,
    )
    live_db = await Database.connect(settings, minsize=0, maxsize=1)
    dead_redis = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    live_redis = connect_redis(settings.redis_url)
    try:
        cases = [
            (live_db, dead_redis, 200, {"status": "degraded", "postgres": "up", "redis": "down"}),
            (
                dead_db,
                live_redis,
                503,
                {"status": "unavailable", "postgres": "down", "redis": "up"},
            ),
        ]
        for db, redis, status, body in cases:
            client = await aiohttp_client(create_app(Probes(RunnerMetrics(), db, redis)))
            response = await client.get("/readyz")
            assert (response.status, await response.json()) == (status, body)
            assert (await client.get("/healthz")).status == 200
    finally:
        for client_redis in (dead_redis, live_redis):
            await client_redis.aclose()
        await dead_db.close()
        await live_db.close()


async def test_a_runner_whose_metrics_port_is_taken_exits_1_with_one_line(
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        runner = runner_processes(RUNNER_METRICS_PORT=str(sock.getsockname()[1]))
        assert await runner.wait(15) == 1
    assert "cannot listen on 127.0.0.1" in runner.log()
    assert "Traceback" not in runner.log()


async def test_the_gateways_process_metrics_are_collected_off_its_event_loop(
    live_gateway: LiveGateway,
) -> None:
    """Counting the process's open descriptors lists /proc/self/fd: 8 ms at 10,000 streams,
    a loop stall on every scrape. The process metrics come from a thread; the rest (which read
    the loop's own objects) from the loop."""
    metrics = live_gateway.app[METRICS]
    threads: dict[str, int] = {}

    class Where:
        def __init__(self, name: str) -> None:
            self.name = name

        def collect(self) -> list[GaugeMetricFamily]:
            threads[self.name] = threading.get_ident()
            return [GaugeMetricFamily(f"test_where_{self.name}", "where collected", value=1)]

    metrics.process_registry.register(Where("process"))
    metrics.registry.register(Where("loop"))
    async with aiohttp.ClientSession() as session:
        samples = await scrape(session, f"{live_gateway.url}/metrics")
    assert value(samples, "process_open_fds") > 0  # still exported, in the same scrape
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "test_where_loop") == value(samples, "test_where_process") == 1
    assert threads["loop"] == threading.get_ident()  # the test shares the gateway's loop
    assert threads["process"] != threading.get_ident()
