"""Scenario 1: Redis is SIGKILLed while 500 streams watch 50 running tasks."""

from __future__ import annotations

import asyncio
import itertools
import time

from tests.faults.conftest import FAST_ENV, Faults, Watching, monotonic_versions
from tests.faults.sse_raw import Follower

TASKS, WATCHERS_PER_TASK = 50, 10
OUTAGE_S = 6.5  # just after the subscription's reconnect attempt at 6.3 s (backoff 0.1 s doubling)
POLL_INTERVAL_S = float(FAST_ENV["SSE_POLL_INTERVAL"])


async def metric(process: object, name: str) -> float:
    values = await asyncio.to_thread(process.metrics)  # type: ignore[attr-defined]
    return values.get(name, 0.0)


async def test_redis_killed_streams_poll_then_return_to_pubsub(faults: Faults) -> None:
    gateway = faults.gateway()
    runners = [faults.runner(RUNNER_CONCURRENCY="25") for _ in range(2)]
    # Each task reports every 0.3 s for ~15 s: long enough to outlive the outage.
    task_ids = faults.spawn("ticker", TASKS, steps=50, interval_s=0.3)
    followers = [
        Follower(task_id, faults.token, [gateway.port])
        for task_id in task_ids
        for _ in range(WATCHERS_PER_TASK)
    ]
    watching = await Watching(followers).start()
    assert await metric(gateway, "praxiom_gateway_streams_open") == len(followers)
    assert await metric(gateway, "praxiom_gateway_subscribed_channels") == TASKS

    polls_at_kill = await metric(gateway, "praxiom_gateway_db_polls_total")
    killed_at = time.monotonic()
    faults.servers.redis.stop()  # SIGKILL
    await asyncio.sleep(1.5)
    assert await metric(gateway, "praxiom_gateway_redis_subscription_up") == 0
    # The gauge counts the streams whose subscription is down (on one Redis: all of them, as
    # subscription_up already says); the polls themselves are what proves each stream polls.
    assert await metric(gateway, "praxiom_gateway_streams_polling") == len(followers)
    await asyncio.sleep(OUTAGE_S - 1.5)
    polled = await metric(gateway, "praxiom_gateway_db_polls_total") - polls_at_kill
    assert polled >= len(followers), f"{polled:.0f} polls: not every stream polled"

    # During the outage every stream kept delivering, from the database.
    back_at = time.monotonic()
    worst_gap = 0.0
    for follower in followers:
        times = [killed_at] + [e.at for e in follower.events if killed_at < e.at < back_at]
        times.append(back_at)
        before = [e.at for e in follower.events if e.at <= killed_at]
        if before:
            times[0] = before[-1]
        worst_gap = max(worst_gap, *(b - a for a, b in itertools.pairwise(times)))
    print(f"\nredis down: worst gap between events on a stream {worst_gap:.2f}s")
    assert worst_gap <= POLL_INTERVAL_S + 1.0, f"a stream went {worst_gap:.2f}s without news"

    publishes_before = [await metric(r, "praxiom_runner_publishes_total") for r in runners]
    faults.servers.redis.start()  # same port
    while True:  # the single subscription reconnects and resubscribes every live channel
        up = await metric(gateway, "praxiom_gateway_redis_subscription_up")
        channels = await metric(gateway, "praxiom_gateway_subscribed_channels")
        if up == 1 and channels == TASKS:
            break
        assert time.monotonic() - back_at < 5.0, "not back on pub/sub 5 s after Redis returned"
        await asyncio.sleep(0.05)
    recovered_s = time.monotonic() - back_at
    print(f"redis back: streams on pub/sub again after {recovered_s:.2f}s")
    assert await metric(gateway, "praxiom_gateway_streams_polling") == 0
    polls = await metric(gateway, "praxiom_gateway_db_polls_total")
    messages = await metric(gateway, "praxiom_gateway_redis_messages_total")
    await asyncio.sleep(1.5)
    assert await metric(gateway, "praxiom_gateway_db_polls_total") == polls, "still polling"
    assert await metric(gateway, "praxiom_gateway_redis_messages_total") > messages + TASKS
    publishes_after = [await metric(r, "praxiom_runner_publishes_total") for r in runners]
    assert all(a > b for a, b in zip(publishes_after, publishes_before, strict=True))

    await watching.finish(60)
    rows = faults.rows(task_ids)
    for follower in followers:
        row = rows[follower.task_id]
        assert row["status"] == "completed"
        assert monotonic_versions(follower.versions())
        assert follower.last is not None and follower.last.version == row["version"]
        assert follower.last.payload["status"] == "completed"
