"""Wires the runner to PostgreSQL, Redis and its handlers, and runs it until a signal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from runner.handlers import load_registry
from runner.signals import stop_on_signals
from runner.store import RunnerStore
from runner.worker import Runner
from taskstate.db import Database
from taskstate.publisher import ProgressPublisher, redis_client
from taskstate.settings import Settings


@asynccontextmanager
async def connected_runner(settings: Settings) -> AsyncIterator[Runner]:
    """A runner with its handlers, its pool and its Redis client; closed on exit."""
    registry = load_registry(settings.runner_task_modules)
    # minsize=0: start even while PostgreSQL is down; the claim loop retries with backoff.
    db = await Database.connect(
        settings, minsize=0, maxsize=settings.runner_concurrency + 3, name="praxiom-runner"
    )
    redis = redis_client(settings)
    publisher = ProgressPublisher(redis, sharded=settings.redis_cluster)
    try:
        yield Runner(settings, RunnerStore(db), publisher, registry)
    finally:
        await redis.aclose()
        await db.close()


async def serve(settings: Settings) -> None:
    async with connected_runner(settings) as runner:
        with stop_on_signals(runner.stop):
            await runner.run()
