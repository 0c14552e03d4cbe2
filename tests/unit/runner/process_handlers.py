"""Handlers for the process-isolation tests: module-level, so a spawned child imports them by
name. Each reports its pid first, so a test can check the child is gone afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from praxiom_progress.runner.handlers import SyncTaskContext, TaskContext, TaskFailed, TaskResult


def counts(task: SyncTaskContext) -> TaskResult:
    task.report_progress("counting", 10, f"pid {os.getpid()}")
    task.report_progress("counting", 60, "Counted")
    facts = {"params": dict(task.params), "attempt": task.attempt, "state": dict(task.state)}
    facts["workspace_id"] = str(task.workspace_id)
    facts["spawned_by"] = task.spawned_by
    return TaskResult({**facts, "pid": os.getpid()}, message="Counted in a child")


async def counts_async(task: TaskContext) -> dict[str, Any]:
    await task.report_progress("counting", 10, f"pid {os.getpid()}")
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "async": True}


def spins(task: SyncTaskContext) -> None:
    task.report_progress("spinning", 10, f"pid {os.getpid()}")
    while True:
        pass


def spins_ignoring_sigterm(task: SyncTaskContext) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    task.report_progress("spinning", 10, f"pid {os.getpid()}")
    while True:
        pass


def exits(task: SyncTaskContext) -> None:
    task.report_progress("exiting", 10, f"pid {os.getpid()}")
    os._exit(3)


def segfaults(task: SyncTaskContext) -> None:
    task.report_progress("crashing", 10, f"pid {os.getpid()}")
    os.kill(os.getpid(), signal.SIGSEGV)


def raises(task: SyncTaskContext) -> None:
    task.report_progress("raising", 10, f"pid {os.getpid()}")
    raise ValueError("bad row 7\nsecond line")


def fails(task: SyncTaskContext) -> None:
    task.report_progress("failing", 10, f"pid {os.getpid()}")
    raise TaskFailed("No rows to export")


def reports_until_lost(task: SyncTaskContext) -> None:
    task.report_progress("working", 10, f"pid {os.getpid()}")
    pct = 10
    while True:
        pct = 11 if pct == 12 else 12
        task.report_progress("working", pct, f"pid {os.getpid()}, still working")


def killed(task: SyncTaskContext) -> None:
    """As the OOM killer ends a process: SIGKILL, no chance to answer."""
    task.report_progress("allocating", 10, f"pid {os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)
