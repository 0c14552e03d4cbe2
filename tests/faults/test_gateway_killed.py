"""Scenario 4: a gateway is SIGKILLed with 500 streams open; a second gateway is up."""

from __future__ import annotations

import asyncio
import time

from tests.faults.conftest import Faults, Watching, monotonic_versions
from tests.faults.sse_raw import Follower

TASKS, WATCHERS_PER_TASK = 50, 10


async def test_killed_gateway_clients_resume_on_the_survivor_with_last_event_id(
    faults: Faults,
) -> None:
    victim, survivor = faults.gateway(), faults.gateway()
    faults.runner(RUNNER_CONCURRENCY=str(TASKS))
    task_ids = faults.spawn("ticker", TASKS, steps=40, interval_s=0.3)
    # Every client is on the victim; a load balancer would send reconnects to the survivor.
    followers = [
        Follower(t, faults.token, [victim.port, survivor.port])
        for t in task_ids
        for _ in range(WATCHERS_PER_TASK)
    ]
    watching = await Watching(followers).start()
    await asyncio.sleep(1.0)
    seen_before = {id(f): f.last.version for f in followers if f.last is not None}

    victim.kill()
    killed_at = time.monotonic()
    await watching.finish(60)

    rows = faults.rows(task_ids)
    resumed_after = []
    for follower in followers:
        assert follower.connections == 2, follower.history
        versions = follower.versions()
        assert monotonic_versions(versions), f"a version went backwards: {versions}"
        after_kill = [e for e in follower.events if e.at > killed_at]
        # With Last-Event-ID the survivor starts at the current state, never an older one.
        assert after_kill[0].version >= seen_before[id(follower)]
        resumed_after.append(after_kill[0].at - killed_at)
        assert follower.last is not None
        assert follower.last.payload["status"] == "completed"
        assert follower.last.version == rows[follower.task_id]["version"]
    resumed_after.sort()
    print(f"\ngateway killed: {len(followers)} clients resumed on the survivor, median "
          f"{resumed_after[len(resumed_after) // 2]:.2f}s, slowest {resumed_after[-1]:.2f}s "
          f"after the kill")  # fmt: skip
    assert survivor.alive()
