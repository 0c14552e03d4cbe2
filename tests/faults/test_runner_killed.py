"""Scenario 3: a runner is SIGKILLed holding 20 running tasks; another runner works on."""

from __future__ import annotations

import asyncio
import time

from tests.faults.conftest import FAST_ENV, Faults, Watching, monotonic_versions, until
from tests.faults.sse_raw import Follower

HELD, WATCHERS_PER_TASK = 20, 5
STALE_AFTER_S = float(FAST_ENV["RUNNER_STALE_AFTER"])
REAPER_INTERVAL_S = float(FAST_ENV["RUNNER_REAPER_INTERVAL"])
#: What reaching a client adds to the reaper's write: a publish and a socket write.
DELIVERY_S = 1.0
#: A busy shared machine delays the reaper's cadence and the clients' reads by a second at
#: worst; a real regression (reaping at twice RUNNER_STALE_AFTER, or clients left to the idle
#: re-read) costs seconds more than that. The test prints what it measured.
SCHEDULING_SLACK_S = 1.0


async def test_killed_runner_tasks_fail_as_runner_lost_and_every_client_hears_it(
    faults: Faults,
) -> None:
    gateway = faults.gateway()
    # The survivor runs only the built-in types, so the 20 ticker tasks go to the victim.
    survivor = faults.runner(RUNNER_TASK_MODULES="praxiom_progress.runner.builtin")
    victim = faults.runner(RUNNER_CONCURRENCY=str(HELD))
    held = faults.spawn("ticker", HELD, steps=10_000, interval_s=0.2)
    await until(lambda: faults.statuses(held).get("running") == HELD, "the victim holds 20")
    followers = [
        Follower(t, faults.token, [gateway.port]) for t in held for _ in range(WATCHERS_PER_TASK)
    ]
    watching = await Watching(followers).start()

    before = faults.spawn("research", 10, step_seconds=0.2)  # the survivor's own work
    victim.kill()
    killed_at = time.monotonic()
    await watching.finish(STALE_AFTER_S + REAPER_INTERVAL_S + 10)
    after = faults.spawn("research", 10, step_seconds=0.1)

    error = f"Task runner lost: no heartbeat for over {STALE_AFTER_S:g}s"
    slowest = 0.0
    for follower in followers:
        assert follower.last is not None
        assert (follower.last.payload["status"], follower.last.payload["error"]) == (
            "failed",
            error,
        )
        assert monotonic_versions(follower.versions())
        slowest = max(slowest, follower.last.at - killed_at)
    rows = faults.rows(held)
    reap_lag = max((r["completed_at"] - r["heartbeat_at"]).total_seconds() for r in rows.values())
    print(f"\nrunner killed: clients had the runner-lost event {slowest:.2f}s after the kill; "
          f"reaped at most {reap_lag:.2f}s after the last heartbeat")  # fmt: skip
    assert reap_lag <= STALE_AFTER_S + REAPER_INTERVAL_S + SCHEDULING_SLACK_S
    assert slowest <= STALE_AFTER_S + REAPER_INTERVAL_S + DELIVERY_S + SCHEDULING_SLACK_S
    assert {r["status"] for r in rows.values()} == {"failed"}

    deadline = time.monotonic() + 20
    while faults.statuses(before + after) != {"completed": 20}:
        assert time.monotonic() < deadline, f"survivor stalled: {faults.statuses(before + after)}"
        await asyncio.sleep(0.1)
    assert survivor.alive()
    reaped = (await asyncio.to_thread(survivor.metrics))["praxiom_runner_tasks_reaped_total"]
    assert reaped == HELD
