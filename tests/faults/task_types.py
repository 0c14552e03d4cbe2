"""Task types the fault suite's runner processes load (`RUNNER_TASK_MODULES`)."""

from __future__ import annotations

import asyncio
import time

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext


async def ticker(task: TaskContext) -> dict[str, object]:
    """Reports `steps` times, `interval_s` apart, each message stamped with the monotonic
    clock (shared by every process on the machine) so clients can measure delivery lag."""
    steps = int(task.params.get("steps", 10))
    interval_s = float(task.params.get("interval_s", 0.1))
    pad = "x" * int(task.params.get("pad", 0))
    for step in range(1, steps + 1):
        pct = min(99, step * 100 // steps)
        await task.report_progress("running", pct, f"t={time.monotonic_ns()} {pad}")
        await asyncio.sleep(interval_s)
    return {"steps": steps}


async def blocker(task: TaskContext) -> dict[str, object]:
    """Reports once, then blocks the runner's whole event loop (a stuck C call, a
    synchronous library) for `block_s`, then returns as if all went well."""
    await task.report_progress("running", 10, "About to block")
    time.sleep(float(task.params["block_s"]))  # noqa: ASYNC251 (blocking is the point)
    return {"woke": True}


def register(registry: HandlerRegistry) -> None:
    registry.register("ticker", ticker, timeout_s=600)
    registry.register("blocker", blocker, timeout_s=600)
