"""Redis or PostgreSQL going away under a running runner: nothing is lost, work carries on.

Each outage uses a server of the test's own (a throwaway redis-server, or a TCP proxy in
front of PostgreSQL), never the shared ones.
"""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    RunnerHarness,
    ThrowawayRedis,
    builtin_registry,
    spawn,
    wait_for,
    wait_for_status,
)
from tests.tcp_proxy import postgres_proxy, through


async def test_with_redis_down_tasks_complete_and_publishing_resumes_when_it_returns(
    task_store: TaskStore,
    workspace_id: UUID,
    runners: RunnerHarness,
    throwaway_redis: ThrowawayRedis,
) -> None:
    throwaway_redis.stop()
    runner = runners.start(builtin_registry(), redis_url=throwaway_redis.url)
    task = await spawn(task_store, workspace_id, "validation_kit", step_seconds=0.05)
    final = await wait_for_status(task_store, task, {"completed"})
    assert (final.phase, final.progress_pct) == ("complete", 100)
    assert final.result_data["document_ids"]
    stats = runner.publisher.stats
    assert stats.published == 0 and stats.failed + stats.skipped >= 5  # claim, 3 phases, end

    throwaway_redis.start()  # same port: Redis is back
    client = connect_redis(throwaway_redis.url)
    pubsub = client.pubsub()
    try:
        later = await spawn(task_store, workspace_id, "research", step_seconds=0.3)
        await pubsub.subscribe(progress_channel(later))
        await wait_for_status(task_store, later, {"completed"})

        received: list[dict] = []

        async def got_terminal() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message:
                received.append(json.loads(message["data"]))
            return any(p["status"] == "completed" for p in received)

        await wait_for(got_terminal, timeout_s=5)
        assert stats.published > 0
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_postgres_outage_mid_task_the_runner_retries_and_the_task_finishes(
    settings: Settings, task_store: TaskStore, workspace_id: UUID
) -> None:
    proxy = postgres_proxy(settings.database_url)
    await proxy.start()
    # Beats (1 s) are rarer than reaper passes (0.2 s), as in production (5 s vs 5 s, racing):
    # after the outage a reaper pass comes before the first beat.
    runner_settings = settings.replace(
        database_url=through(proxy, settings.database_url), runner_heartbeat_interval_s=1.0
    )
    runner_db = await Database.connect(runner_settings, minsize=0, maxsize=5)
    redis = connect_redis(settings.redis_url)
    runner = Runner(
        runner_settings, RunnerStore(runner_db), ProgressPublisher(redis), builtin_registry()
    )
    running = asyncio.create_task(runner.run())
    try:
        task = await spawn(task_store, workspace_id, "validation_kit", step_seconds=0.5)

        async def first_phase() -> bool:
            return (await task_store.get_task(task)).progress_pct >= 15

        await wait_for(first_phase)
        # PostgreSQL "restarts": every connection drops, none can be made, for longer than
        # RUNNER_STALE_AFTER, so every heartbeat is stale when it returns. The task must
        # still finish: nobody may be reaped for an outage everyone shared.
        await proxy.cut()
        await asyncio.sleep(runner_settings.runner_stale_after_s + 1.0)
        assert not running.done(), "the runner must not crash while PostgreSQL is away"
        await proxy.restore()
        final = await wait_for_status(task_store, task, {"completed"}, timeout_s=20)
        assert (final.phase, final.progress_pct) == ("complete", 100)

        # And new work still flows through the re-established connections.
        later = await spawn(task_store, workspace_id, "research", step_seconds=0)
        await wait_for_status(task_store, later, {"completed"}, timeout_s=20)
    finally:
        runner.stop(force=True)
        await asyncio.wait_for(running, 20)
        await proxy.cut()
        await redis.aclose()
        await runner_db.close()
