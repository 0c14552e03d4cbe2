"""Task types for tests that run real runner processes (named in RUNNER_TASK_MODULES)."""

from __future__ import annotations

import asyncio
import os

from runner.handlers import HandlerRegistry, TaskContext


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


def register(registry: HandlerRegistry) -> None:
    registry.register("recorded", recorded)
