"""Task types for tests that run real runner processes (named in RUNNER_TASK_MODULES)."""

from __future__ import annotations

import asyncio
import os
import time

from praxiom_progress.runner.handlers import HandlerRegistry, SyncTaskContext, TaskContext


async def recorded(task: TaskContext) -> dict[str, object]:
    """Appends its task id to `params.log` (one atomic append per run), so a test can
    count how many times each task ran, then reports once and sleeps `params.sleep`."""
    fd = os.open(task.params["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task.task_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    await task.report_progress("running", 50, "Recorded")
    await asyncio.sleep(float(task.params.get("sleep", 0)))
    return {"pid": os.getpid()}


async def ticking(task: TaskContext) -> dict[str, object]:
    """Reports `params.steps` times, every `params.interval` seconds, each report's message
    `step@time` (wall clock, when it was made): a subscriber tells which reports it got and
    how late each one came."""
    steps = int(task.params["steps"])
    for step in range(1, steps + 1):
        await asyncio.sleep(float(task.params["interval"]))
        await task.report_progress("ticking", step * 99 // steps, f"{step}@{time.time():.6f}")
    return {}


def blocking_export(task: SyncTaskContext) -> dict[str, object]:
    """A plain def (it runs in a thread): sleeps `params.sleep` in blocking code between two
    reports, and returns whom it ran for."""
    task.report_progress("exporting", 10, "Exporting")
    time.sleep(float(task.params.get("sleep", 0)))
    task.report_progress("exporting", 90, "Exported")
    return {"spawned_by": task.spawned_by, "workspace_id": str(task.workspace_id)}


def spinning(task: SyncTaskContext) -> None:
    """Process-isolated code that never yields: reports its pid, then spins until killed."""
    task.report_progress("spinning", 10, f"pid {os.getpid()}")
    while True:
        pass


def register(registry: HandlerRegistry) -> None:
    registry.register("recorded", recorded)
    registry.register("ticking", ticking)
    registry.register("blocking_export", blocking_export)
    registry.register("spinning", spinning, isolation="process", timeout_s=2)
