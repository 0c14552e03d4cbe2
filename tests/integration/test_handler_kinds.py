"""Every kind of handler in a real `praxiom-progress runner` process, on real PostgreSQL: a
plain def in a thread, and a process-isolated handler that never yields, killed at its
timeout and on cancel with no child process left behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from uuid import UUID

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import RunnerProcess, wait_for, wait_for_status


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def reported_pid(task_store: TaskStore, task_id: UUID) -> int:
    found: list[int] = []

    async def reported() -> bool:
        task = await task_store.get_task(task_id)
        if task is not None and task.message.startswith("pid "):
            found.append(int(task.message.split()[1]))
        return bool(found)

    await wait_for(reported, timeout_s=20, interval_s=0.02)
    return found[0]


async def test_a_plain_def_runs_in_a_runner_process_and_knows_who_spawned_it(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    runner_processes()
    task = await task_store.insert_task(
        workspace_id=workspace_id,
        task_type="blocking_export",
        params={"sleep": 0.3},
        spawned_by="service:billing",
    )
    final = await wait_for_status(task_store, task.id, {"completed", "failed"}, timeout_s=20)
    assert final.status == "completed", final.error
    assert final.result_data == {
        "spawned_by": "service:billing",
        "workspace_id": str(workspace_id),
    }


async def test_code_that_never_yields_is_killed_at_its_timeout_in_a_runner_process(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    runner_processes()
    task = await task_store.insert_task(workspace_id=workspace_id, task_type="spinning", params={})
    pid = await reported_pid(task_store, task.id)
    final = await wait_for_status(task_store, task.id, {"failed"}, timeout_s=10)
    assert final.error == "Spinning task timed out after 2s"
    assert _run_time_s(final) < 4.0
    assert not alive(pid)


async def test_cancel_kills_the_child_of_a_runner_process_within_a_second(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    runner_processes()
    task = await task_store.insert_task(workspace_id=workspace_id, task_type="spinning", params={})
    pid = await reported_pid(task_store, task.id)
    await task_store.cancel_task(task.id)  # as the gateway does, with its NOTIFY
    cancelled_at = time.monotonic()

    async def gone() -> bool:
        return not alive(pid)

    await wait_for(gone, timeout_s=5, interval_s=0.01)
    assert time.monotonic() - cancelled_at < 1.0
    assert (await task_store.get_task(task.id)).status == "cancelled"  # type: ignore[union-attr]


def _run_time_s(task: Task) -> float:
    assert task.run_time_ms is not None
    return task.run_time_ms / 1000


async def test_a_child_does_not_outlive_a_runner_killed_with_sigkill(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    runner = runner_processes()
    task = await task_store.insert_task(workspace_id=workspace_id, task_type="spinning", params={})
    pid = await reported_pid(task_store, task.id)
    runner.signal(signal.SIGKILL)  # no chance to stop its child: the kernel does

    async def gone() -> bool:
        return not alive(pid)

    await wait_for(gone, timeout_s=5, interval_s=0.01)
