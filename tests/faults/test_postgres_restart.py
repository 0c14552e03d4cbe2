"""Scenario 2: PostgreSQL restarts (fast shutdown, then start) under open streams and
running tasks."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.faults.conftest import Faults, Watching, monotonic_versions
from tests.faults.sse_raw import Follower

TASKS, WATCHERS_PER_TASK = 20, 10
OUTAGE_S = 4.0  # longer than RUNNER_STALE_AFTER (3 s): no heartbeat is fresh when it returns


async def test_postgres_restart_503s_new_streams_keeps_open_ones_and_loses_nothing(
    faults: Faults,
) -> None:
    gateway = faults.gateway()
    runners = [faults.runner(RUNNER_CONCURRENCY="10") for _ in range(2)]
    task_ids = faults.spawn("ticker", TASKS, steps=40, interval_s=0.25)
    followers = [
        Follower(task_id, faults.token, [gateway.port])
        for task_id in task_ids
        for _ in range(WATCHERS_PER_TASK)
    ]
    watching = await Watching(followers).start()
    await asyncio.sleep(0.5)

    await asyncio.to_thread(faults.servers.postgres.stop, "fast")
    down_at = time.monotonic()
    answers: list[tuple[int, str, float]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        for task_id in task_ids[:10]:
            started = time.monotonic()
            async with session.get(
                f"{gateway.base_url}/api/tasks/{task_id}/progress",
                headers={"Authorization": f"Bearer {faults.token}"},
            ) as answer:
                body = await answer.json()
                assert int(answer.headers["Retry-After"]) >= 1
                answers.append((answer.status, body["error"]["code"], time.monotonic() - started))
    slowest = max(seconds for *_, seconds in answers)
    print(f"\npostgres down: new streams answered {answers[0][:2]} in at most {slowest:.2f}s")
    assert {(status, code) for status, code, _ in answers} == {(503, "UNAVAILABLE")}
    assert slowest < 2.0, "a new stream must be refused promptly, not hang"
    metrics = await asyncio.to_thread(gateway.metrics)
    assert metrics["praxiom_gateway_streams_open"] == len(followers), "open streams were dropped"
    assert metrics["praxiom_gateway_redis_subscription_up"] == 1
    assert metrics["praxiom_gateway_subscribed_channels"] == TASKS
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    assert all(runner.alive() for runner in runners)

    await asyncio.to_thread(faults.servers.postgres.start)
    back_at = time.monotonic()
    await watching.finish(60)
    print(f"postgres back: every task finished {time.monotonic() - back_at:.1f}s later")

    metrics = await asyncio.to_thread(gateway.metrics)
    assert metrics["praxiom_gateway_db_polls_total"] == 0, "streams left pub/sub"
    rows = faults.rows(task_ids)
    assert {row["status"] for row in rows.values()} == {"completed"}
    for row in rows.values():
        assert (row["phase"], row["progress_pct"], row["error"]) == ("complete", 100, None)
        assert row["result_data"] == {"steps": 40}
    for follower in followers:
        assert follower.connections == 1, f"a stream was dropped: {follower.history}"
        assert monotonic_versions(follower.versions())
        assert follower.last is not None
        assert follower.last.version == rows[follower.task_id]["version"]
        assert follower.last.payload["status"] == "completed"
