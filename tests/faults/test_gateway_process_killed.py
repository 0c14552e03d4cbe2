"""One of two gateway processes on one port (GATEWAY_PROCESSES=2) is SIGKILLed with streams
open: its clients reconnect to the same address with Last-Event-ID, the kernel sends them to
the survivor (or the restarted process), and every one ends on its task's true terminal state."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from tests.faults.conftest import Faults, Watching, monotonic_versions, until
from tests.faults.sse_raw import Follower
from tests.process_sockets import TCP_ESTABLISHED, TCP_LISTEN, children, sockets_on_port

TASKS, WATCHERS = 20, 10  # watchers per task


async def test_streams_of_a_killed_process_resume_on_the_same_port(faults: Faults) -> None:
    gateway = faults.gateway(GATEWAY_PROCESSES="2", GATEWAY_RESTART_DELAY="0.5")

    def listening() -> set[int]:
        return {p for p in children(gateway.pid) if sockets_on_port(p, gateway.port, TCP_LISTEN)}

    await until(lambda: len(listening()) == 2, "two gateway processes listening")
    workers = listening()
    faults.runner(RUNNER_CONCURRENCY=str(TASKS))
    task_ids = faults.spawn("ticker", TASKS, steps=40, interval_s=0.3)
    port = [gateway.port]  # one address: a reconnect goes wherever the kernel sends it
    followers = [Follower(t, faults.token, port) for t in task_ids for _ in range(WATCHERS)]
    watching = await Watching(followers).start()
    await asyncio.sleep(1.0)

    def held_now() -> dict[int, int]:
        return {pid: sockets_on_port(pid, gateway.port, TCP_ESTABLISHED) for pid in workers}

    # The start-up probes' connections may still be closing on a busy machine (203 of 200).
    await until(lambda: sum(held_now().values()) == len(followers), "only the streams held")
    held = held_now()
    victim = max(held, key=lambda pid: held[pid])
    assert sum(held.values()) == len(followers) and all(held.values()), held
    seen_before = {id(f): f.last.version for f in followers if f.last is not None}

    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    await watching.finish(60)

    rows = faults.rows(task_ids)
    moved = [f for f in followers if f.connections == 2]
    assert len(moved) == held[victim], [f.history for f in followers if f.connections > 2]
    assert all(f.connections == 1 for f in followers if f not in moved)
    resumed_after = []
    for follower in followers:
        versions = follower.versions()
        assert monotonic_versions(versions), f"a version went backwards: {versions}"
        assert follower.last is not None
        assert follower.last.payload["status"] == "completed"
        assert follower.last.version == rows[follower.task_id]["version"]
    for follower in moved:
        after_kill = [e for e in follower.events if e.at > killed_at]
        assert after_kill[0].version >= seen_before[id(follower)]
        resumed_after.append(after_kill[0].at - killed_at)
    resumed_after.sort()
    print(f"\none of 2 gateway processes killed: {len(moved)} of {len(followers)} clients "
          f"resumed on the same port, median {resumed_after[len(resumed_after) // 2]:.2f}s, "
          f"slowest {resumed_after[-1]:.2f}s after the kill")  # fmt: skip
    assert gateway.alive()
    await until(lambda: len(listening()) == 2, "the killed process restarted")
    assert victim not in listening()
