"""Wires the runner to PostgreSQL, Redis and its handlers, and runs it until a signal."""

from __future__ import annotations

from runner.handlers import load_registry
from runner.signals import stop_on_signals
from runner.store import RunnerStore
from runner.worker import Runner
from taskstate.db import Database
from taskstate.publisher import ProgressPublisher, connect_redis
from taskstate.settings import Settings


async def serve(settings: Settings) -> None:
    registry = load_registry(settings.runner_task_modules)
    # minsize=0: start even while PostgreSQL is down; the claim loop retries with backoff.
    db = await Database.connect(
        settings, minsize=0, maxsize=settings.runner_concurrency + 3, name="praxiom-runner"
    )
    redis = connect_redis(settings.redis_url)
    try:
        runner = Runner(settings, RunnerStore(db), ProgressPublisher(redis), registry)
        with stop_on_signals(runner.stop):
            await runner.run()
    finally:
        await redis.aclose()
        await db.close()
