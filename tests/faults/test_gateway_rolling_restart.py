"""Scenario 5: a rolling restart of two gateways with SIGTERM under open streams."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.faults.conftest import Faults, Watching, monotonic_versions
from tests.faults.procs import GatewayProcess
from tests.faults.sse_raw import Follower

TASKS, WATCHERS_PER_TASK = 20, 10
#: "Promptly": every stream of a stopping gateway has ended within this.
PROMPT_S = 2.0


async def _restart(gateway: GatewayProcess, followers: list[Follower]) -> tuple[float, float]:
    """SIGTERM `gateway`, wait for it to exit, start it again on the same port; how long its
    streams took to end, and how long it took to exit."""
    held = [f for f in followers if f.on_port == gateway.port]
    assert held, "no stream on the gateway to restart"
    gateway.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    code = await asyncio.to_thread(gateway.wait, 15)
    exited_s = time.monotonic() - stopped_at
    assert code == 0, gateway.log_tail()
    assert exited_s <= PROMPT_S, f"the gateway took {exited_s:.1f}s to end its streams and exit"
    # Every stream it held has ended, and its client is already elsewhere.
    while any(f.on_port == gateway.port or (f.on_port is None and not f.finished) for f in held):
        assert time.monotonic() - stopped_at < 10, "clients did not reconnect"
        await asyncio.sleep(0.05)
    ended_s = time.monotonic() - stopped_at
    await asyncio.to_thread(gateway.start)
    await asyncio.to_thread(gateway.wait_healthy)
    return ended_s, exited_s


async def test_rolling_restart_ends_streams_cleanly_and_clients_miss_nothing(
    faults: Faults,
) -> None:
    first, second = faults.gateway(), faults.gateway()
    faults.runner(RUNNER_CONCURRENCY=str(TASKS))
    task_ids = faults.spawn("ticker", TASKS, steps=60, interval_s=0.25)
    ports = [first.port, second.port]
    followers = [
        Follower(t, faults.token, ports[i % 2 :] + ports[: i % 2])
        for i, t in enumerate(task_ids)
        for _ in range(WATCHERS_PER_TASK)
    ]
    watching = await Watching(followers).start()
    await asyncio.sleep(1.0)

    timings = [await _restart(first, followers)]
    await asyncio.sleep(1.0)
    timings.append(await _restart(second, followers))
    await watching.finish(60)
    print(f"\nrolling restart: streams moved within {max(t[0] for t in timings):.2f}s, "
          f"gateways exited within {max(t[1] for t in timings):.2f}s")  # fmt: skip

    rows = faults.rows(task_ids)
    for follower in followers:
        assert all("clean end" in h for h in follower.history[:-1]), follower.history
        assert follower.connections >= 2
        assert monotonic_versions(follower.versions())
        assert follower.last is not None and follower.last.payload["status"] == "completed"
        assert follower.last.version == rows[follower.task_id]["version"]
    assert max(ended for ended, _ in timings) <= PROMPT_S
