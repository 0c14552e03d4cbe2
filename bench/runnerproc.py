"""One real runner in a process of its own, for the runner scenarios.

Its own process so its CPU can be measured and py-spy can sample it without the harness
in the way. It is built by `runner.daemon.connected_runner`, as `praxiom-progress runner`
builds it (same pool, same Redis client), with `RUNNER_TASK_MODULES=bench.tasks`.

Modes (one JSON line on stdout whenever something is ready or done):

- `report`: counts `report_progress` calls between `--from-ns` and `--until-ns`, and the
  progress rows the runner wrote for them meanwhile (fewer under RUNNER_PROGRESS_MIN_INTERVAL).
- `drain`: runs until `--expect` tasks have ended; claimed-and-completed per second.
- `serve`: prints `{"ready": true}`, runs until a line on stdin, prints its stats.

Run: `python -m bench.runnerproc MODE ...` with DATABASE_URL / REDIS_URL set.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

from bench import tasks
from praxiom_progress.runner.daemon import connected_runner
from praxiom_progress.taskstate.settings import Settings


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env().replace(runner_task_modules=("bench.tasks",))
    tasks.WINDOW.from_ns, tasks.WINDOW.until_ns = args.from_ns, args.until_ns
    async with connected_runner(settings) as runner:
        started = time.monotonic()
        running = asyncio.create_task(runner.run())
        try:
            if args.mode == "report":
                await asyncio.sleep(max(0.0, (args.from_ns - time.monotonic_ns()) / 1e9))
                written_before = runner.throttle.stats.written
                await asyncio.sleep(max(0.0, (args.until_ns - time.monotonic_ns()) / 1e9))
                written = runner.throttle.stats.written - written_before
                seconds = (args.until_ns - args.from_ns) / 1e9
                counted = tasks.WINDOW.counted
                # Let the reporters finish, or a forced stop would re-queue them for later runs.
                while runner.stats.completed < settings.runner_concurrency:
                    if time.monotonic_ns() > args.until_ns + 5e9:
                        break
                    await asyncio.sleep(0.01)
                say(reports=counted, per_s=counted / seconds, calls=tasks.WINDOW.calls,
                    written=written, written_per_s=written / seconds)  # fmt: skip
            elif args.mode == "drain":
                stats = runner.stats
                while stats.completed + stats.failed < args.expect:
                    if time.monotonic() - started > args.timeout_s:
                        break
                    await asyncio.sleep(0.002)
                seconds = time.monotonic() - started
                say(completed=stats.completed, failed=stats.failed, seconds=seconds,
                    per_s=stats.completed / seconds)  # fmt: skip
            else:
                await asyncio.sleep(1.0)  # LISTEN is up well before this
                say(ready=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                say(**dataclasses.asdict(runner.stats))
        finally:
            runner.stop(force=True)
            await running


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runnerproc")
    parser.add_argument("mode", choices=["report", "drain", "serve"])
    parser.add_argument("--from-ns", type=int, default=0)
    parser.add_argument("--until-ns", type=int, default=0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
