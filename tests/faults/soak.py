"""`make soak`: a mixed load against the fault suite's throwaway stack for a chosen time,
reporting memory, latency and errors as it goes, so a long run can be checked before a
release. Not part of CI.

Each second it spawns a few short tasks (fast tickers and the built-in `research`), follows
each with several raw-socket clients to its end, and opens and abandons a burst of extra
streams (churn). Every `--every` seconds it prints one line: the gateway's and runners'
resident memory, open streams and asyncio tasks, the clients' publish-to-receipt lag
(p50/p99), tasks finished, and errors (clients that never saw a terminal event, refusals,
versions that went backwards). Exits 1 when anything was lost or the gateway's memory in
the last third of the run grew more than 10 % over its level at the end of the first third.

    python -m tests.faults.soak --seconds 600 --every 30
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.sse_raw import Follower, open_stream
from tests.faults.world import Faults, running_servers

_STAMP = re.compile(rb'"message":"t=(\d+)')
WATCHERS_PER_TASK = 5
CHURN_PER_SECOND = 20


@dataclass
class Tally:
    """What the clients saw since the last report, and in all."""

    lags: list[float] = field(default_factory=list)
    finished: int = 0
    lost: int = 0  # clients that never got a terminal event
    backwards: int = 0  # clients that saw a version go down
    refusals: int = 0
    churned: int = 0
    rss_mib: list[float] = field(default_factory=list)  # the gateway's, one per report

    def take_lags(self) -> list[float]:
        lags, self.lags = self.lags, []
        return lags


async def follow(follower: Follower, tally: Tally) -> None:
    try:
        await follower.follow(120)
    except TimeoutError:
        tally.lost += 1
        return
    versions = follower.versions()
    if any(b < a for a, b in itertools.pairwise(versions)):
        tally.backwards += 1
    tally.refusals += sum(n for status, n in follower.refusals.items() if status != 204)
    if not follower.finished:
        tally.lost += 1
        return
    tally.finished += 1
    for event in follower.events[1:]:
        stamp = _STAMP.search(event.data)
        if stamp:
            tally.lags.append(event.at - int(stamp[1]) / 1e9)


async def churn(port: int, task_ids: list[str], token: str, tally: Tally) -> None:
    """Open streams and reset them as soon as their first event arrives."""
    for _ in range(CHURN_PER_SECOND):
        try:
            connection = await open_stream(port, random.choice(task_ids), token)
        except OSError:
            tally.refusals += 1
            continue
        try:
            async with asyncio.timeout(5):
                await connection.first
        except TimeoutError:
            tally.lost += 1
        connection.reset()
        tally.churned += 1


async def soak(faults: Faults, seconds: float, every: float) -> bool:
    gateway = faults.gateway(SSE_IDLE_TIMEOUT="10", SSE_POLL_INTERVAL="3")
    # Every tick published (the lag below is measured from each tick's stamp).
    runners = [
        faults.runner(RUNNER_CONCURRENCY="20", RUNNER_PROGRESS_MIN_INTERVAL="0") for _ in range(2)
    ]
    tally = Tally()
    background: set[asyncio.Task[None]] = set()
    started = last_report = time.monotonic()
    print(f"{'t (s)':>6} {'gw MiB':>7} {'runners MiB':>12} {'streams':>7} {'tasks':>5} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'done':>6} {'churned':>7} {'lost':>4} {'back':>4} "
          f"{'refused':>7}", flush=True)  # fmt: skip
    while time.monotonic() - started < seconds:
        tickers = faults.spawn("ticker", 3, steps=40, interval_s=0.1)
        research = faults.spawn("research", 1, step_seconds=0.5)
        for task_id in tickers + research:
            for _ in range(WATCHERS_PER_TASK):
                follower = Follower(task_id, faults.token, [gateway.port])
                job = asyncio.create_task(follow(follower, tally))
                background.add(job)
                job.add_done_callback(background.discard)
        job = asyncio.create_task(churn(gateway.port, tickers, faults.token, tally))
        background.add(job)
        job.add_done_callback(background.discard)
        await asyncio.sleep(1.0)
        if time.monotonic() - last_report >= every:
            last_report = time.monotonic()
            metrics = await asyncio.to_thread(gateway.metrics)
            lags = sorted(tally.take_lags()) or [0.0]
            tally.rss_mib.append(gateway.rss_bytes() / 2**20)
            runner_mib = "/".join(f"{r.rss_bytes() / 2**20:.0f}" for r in runners)
            print(f"{last_report - started:6.0f} {tally.rss_mib[-1]:7.1f} {runner_mib:>12} "
                  f"{metrics['praxiom_gateway_streams_open']:7.0f} "
                  f"{metrics['praxiom_gateway_asyncio_tasks']:5.0f} "
                  f"{statistics.median(lags) * 1000:7.1f} "
                  f"{lags[int(len(lags) * 0.99)] * 1000:7.1f} {tally.finished:6d} "
                  f"{tally.churned:7d} {tally.lost:4d} {tally.backwards:4d} "
                  f"{tally.refusals:7d}", flush=True)  # fmt: skip
    await asyncio.wait(background, timeout=60)
    still_running = faults.statuses(faults.all_task_ids()).get("running", 0)
    third = max(1, len(tally.rss_mib) // 3)
    grew = len(tally.rss_mib) >= 3 and max(tally.rss_mib[-third:]) > tally.rss_mib[third - 1] * 1.10
    print(f"\nsoak: {tally.finished} clients finished, {tally.lost} lost, {tally.backwards} saw "
          f"a version go back, {tally.refusals} refused, {tally.churned} churned; "
          f"{still_running} tasks still running; gateway RSS "
          f"{' -> '.join(f'{m:.0f}' for m in tally.rss_mib[:1] + tally.rss_mib[-1:])} MiB"
          f"{' (GREW)' if grew else ''}")  # fmt: skip
    return not (tally.lost or tally.backwards or tally.refusals or still_running or grew)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=30.0)
    args = parser.parse_args()
    with running_servers() as servers:
        faults = Faults(servers, Path(tempfile.mkdtemp(prefix="praxiom-soak-")))
        try:
            healthy = asyncio.run(soak(faults, args.seconds, args.every))
        finally:
            faults.close()
    print(f"logs in {faults.log_dir}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
