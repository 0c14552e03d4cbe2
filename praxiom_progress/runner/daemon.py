"""Wires the runner to PostgreSQL, Redis, its handlers and its metrics, and runs it until a
signal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from praxiom_progress.runner import http
from praxiom_progress.runner.handlers import load_registry
from praxiom_progress.runner.metrics import RunnerMetrics
from praxiom_progress.runner.signals import stop_on_signals
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.publisher import progress_publisher, redis_client
from praxiom_progress.taskstate.settings import Settings

log = logging.getLogger("runner")


@asynccontextmanager
async def connected_runner(
    settings: Settings, *, serve_http: bool = False
) -> AsyncIterator[Runner]:
    """A runner with its handlers, its pool, its Redis client and its metrics; closed on exit.

    `serve_http` also opens the health/metrics port (`RUNNER_METRICS_PORT`, unless 0)."""
    registry = load_registry(settings.runner_task_modules)
    metrics = RunnerMetrics()
    # minsize=0: start even while PostgreSQL is down; the claim loop retries with backoff.
    db = await Database.connect(
        settings,
        minsize=0,
        maxsize=settings.runner_concurrency + 3,
        name="praxiom-runner",
        on_query=metrics.observe_query,
    )
    # The publisher bounds each round trip itself (one timer, not one per reply), and the
    # health probe its ping.
    redis = redis_client(settings, reply_timeout=False)
    publisher = progress_publisher(redis, settings)
    try:
        await publisher.start()  # on a cluster: the slot map is read before the runner is ready
        runner = Runner(
            settings,
            RunnerStore(db),
            publisher,
            registry,
            on_progress_write=metrics.report_progress.observe,
        )
        metrics.watch(runner)
        async with AsyncExitStack() as stack:
            if serve_http and settings.runner_metrics_port:
                host, port = settings.runner_metrics_host, settings.runner_metrics_port
                await stack.enter_async_context(
                    http.serving(http.Probes(metrics, db, redis), host, port)
                )
                log.info(
                    "health and metrics on http://%s:%d",
                    host,
                    port,
                    extra={"action": "metrics_listening"},
                )
            yield runner
    finally:
        await publisher.aclose()
        await redis.aclose()
        await db.close()


async def serve(settings: Settings) -> None:
    async with connected_runner(settings, serve_http=True) as runner:
        with stop_on_signals(runner.stop):
            await runner.run()
