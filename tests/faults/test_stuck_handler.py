"""Scenario 8: a handler blocks its runner's event loop for longer than the stale window."""

from __future__ import annotations

import asyncio
import json
import time

import redis

from praxiom_progress.taskstate.channels import progress_channel
from tests.faults.conftest import FAST_ENV, Faults, Watching, until
from tests.faults.sse_raw import Follower

STALE_AFTER_S = float(FAST_ENV["RUNNER_STALE_AFTER"])
REAPER_INTERVAL_S = float(FAST_ENV["RUNNER_REAPER_INTERVAL"])
BLOCK_S = 2 * STALE_AFTER_S + 1


async def test_a_blocked_runner_is_reaped_and_does_not_overwrite_the_end_when_it_wakes(
    faults: Faults,
) -> None:
    gateway = faults.gateway()
    reaper = faults.runner(
        RUNNER_TASK_MODULES="praxiom_progress.runner.builtin"
    )  # cannot claim `blocker`
    stuck = faults.runner()
    (task_id,) = faults.spawn("blocker", 1, block_s=BLOCK_S)
    await until(lambda: faults.statuses([task_id]) == {"running": 1}, "the task running")
    # Everything published on the task's channel from here on, in order.
    channel = redis.Redis(port=faults.servers.redis.port).pubsub()
    channel.subscribe(progress_channel(task_id))
    followers = [Follower(task_id, faults.token, [gateway.port]) for _ in range(5)]
    watching = await Watching(followers).start()
    blocked_at = time.monotonic()

    await watching.finish(BLOCK_S + 10)
    ended_after = max(f.last.at for f in followers if f.last) - blocked_at
    terminal = followers[0].last
    assert terminal is not None
    assert terminal.payload["status"] == "failed"
    assert (
        terminal.payload["error"] == f"Task runner lost: no heartbeat for over {STALE_AFTER_S:g}s"
    )
    assert ended_after < BLOCK_S, "the task ended only when the stuck runner woke"

    # The stuck runner wakes up, its handler "succeeds" and it tries to record that.
    await asyncio.sleep(max(0.0, BLOCK_S - (time.monotonic() - blocked_at)) + 2.0)
    assert stuck.alive()
    row = faults.rows([task_id])[task_id]
    assert (row["status"], row["error"]) == ("failed", terminal.payload["error"])
    assert row["version"] == terminal.version, "the row was written after the reaper's end"
    metrics = await asyncio.to_thread(stuck.metrics)
    assert metrics["praxiom_runner_tasks_cancelled_total"] == 1, "it did not notice it lost"
    assert metrics["praxiom_runner_tasks_completed_total"] == 0
    published = []
    drained_by = time.monotonic() + 1.0
    while time.monotonic() < drained_by:
        message = channel.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            published.append(json.loads(message["data"]))
    channel.close()
    # (The handler's one report may be among them: it raced with this subscription.)
    statuses = [p["status"] for p in published]
    assert "failed" in statuses, "the reaper's end was not published"
    ended = statuses.index("failed")
    assert published[ended + 1 :] == [], "something was published after the end"
    assert published[ended]["version"] == terminal.version
    print(f"\nstuck handler: failed by the reaper {ended_after:.2f}s into a {BLOCK_S:g}s block; "
          f"the row stayed at version {row['version']} after the runner woke")  # fmt: skip
    assert (await asyncio.to_thread(reaper.metrics))["praxiom_runner_tasks_reaped_total"] == 1
