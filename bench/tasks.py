"""Benchmark task types, registered the way a deployment registers its own
(`RUNNER_TASK_MODULES=bench.tasks`), so the runner under test is built exactly as the daemon
builds it.

- `bench_reporter` calls `report_progress` in a loop until `WINDOW.until_ns`, counting the
  calls made inside the measured window;
- `bench_noop` returns at once: claim-and-complete throughput, spawn-to-running latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext


@dataclass
class Window:
    from_ns: int = 0  # CLOCK_MONOTONIC; calls before this are warm-up
    until_ns: int = 0  # reporters return at this instant
    counted: int = 0
    calls: int = 0


WINDOW = Window()


async def reporter(task: TaskContext) -> dict[str, Any]:
    pct = 0
    while (now := time.monotonic_ns()) < WINDOW.until_ns:
        pct = (pct + 1) % 101
        await task.report_progress("running", pct, "benchmark")
        WINDOW.calls += 1
        WINDOW.counted += WINDOW.from_ns <= now
    return {}


async def noop(task: TaskContext) -> dict[str, Any]:
    return {}


def register(registry: HandlerRegistry) -> None:
    registry.register("bench_reporter", reporter)
    registry.register("bench_noop", noop)
