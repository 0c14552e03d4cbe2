"""Real `praxiom-progress runner` processes: exactly-once claims, SIGKILL, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from praxiom_progress.runner.execution import REQUEUED_MESSAGE
from praxiom_progress.runner.worker import runner_lost_error
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import ProgressRecorder, RunnerProcess, spawn, wait_for, wait_for_status


async def count_by_status(db: Database) -> dict[str, int]:
    rows = await db.fetch_all("SELECT status, count(*) AS n FROM background_tasks GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


async def test_two_runner_processes_run_each_of_200_tasks_exactly_once(
    db: Database,
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.log"
    ids = [await spawn(task_store, workspace_id, "recorded", log=str(log)) for _ in range(200)]
    first = runner_processes(RUNNER_CONCURRENCY="8")
    second = runner_processes(RUNNER_CONCURRENCY="8")

    async def all_completed() -> bool:
        return (await count_by_status(db)).get("completed") == 200

    await wait_for(all_completed, timeout_s=60, interval_s=0.2)
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(runs) == {str(task_id) for task_id in ids}
    assert max(runs.values()) == 1, "a task ran more than once"
    pids = {line.split()[1] for line in log.read_text().splitlines()}
    assert pids <= {str(first.proc.pid), str(second.proc.pid)}


async def test_a_runner_killed_mid_task_has_its_task_reaped_and_published(
    settings: Settings,
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
    recorder: ProgressRecorder,
) -> None:
    doomed = runner_processes()
    task = await spawn(task_store, workspace_id, "validation_kit", step_seconds=60)

    async def in_first_phase() -> bool:
        return (await task_store.get_task(task)).phase == "assumption_map"

    await wait_for(in_first_phase, timeout_s=15)
    survivor = runner_processes()  # keeps working; its reaper finds the orphan
    doomed.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    final = await wait_for_status(task_store, task, {"failed"}, timeout_s=15)
    elapsed = time.monotonic() - killed_at

    assert final.error == runner_lost_error(settings.runner_stale_after_s)
    window = settings.runner_stale_after_s + settings.runner_reaper_interval_s
    # The survivor is a new process: on a busy machine its start-up alone can take seconds
    # before its first sweep. A reaper that ignored its settings would take the default
    # window (minutes): this bound only needs to tell the two apart.
    assert elapsed < window + 6.0, f"reaped after {elapsed:.1f}s, window {window}s"
    assert (final.phase, final.progress_pct) == ("assumption_map", 15)

    async def terminal_published() -> bool:
        return any(p["status"] == "failed" for p in recorder.of(task))

    await wait_for(terminal_published, timeout_s=5)
    assert recorder.of(task)[-1]["version"] == final.version

    # The survivor kept working throughout.
    other = await spawn(task_store, workspace_id, "research", step_seconds=0)
    await wait_for_status(task_store, other, {"completed"}, timeout_s=15)
    assert survivor.proc.poll() is None


async def test_sigterm_exits_zero_and_leaves_no_task_running(
    db: Database,
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    process = runner_processes(RUNNER_SHUTDOWN_GRACE="1")
    slow = [
        await spawn(task_store, workspace_id, "validation_kit", step_seconds=60) for _ in range(3)
    ]
    quick = await spawn(task_store, workspace_id, "research", step_seconds=0.3)

    async def all_running() -> bool:
        return (await count_by_status(db)).get("running") == 4

    await wait_for(all_running, timeout_s=15)
    process.signal(signal.SIGTERM)
    assert await process.wait(timeout_s=15) == 0, process.log()

    assert (await count_by_status(db)).get("running") is None
    assert (await task_store.get_task(quick)).status == "completed"
    for task_id in slow:
        row = await task_store.get_task(task_id)
        assert (row.status, row.message) == ("pending", REQUEUED_MESSAGE)


async def test_requeued_tasks_are_picked_up_by_another_runner(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    leaving = runner_processes(RUNNER_SHUTDOWN_GRACE="0.5")
    task = await spawn(task_store, workspace_id, "validation_kit", step_seconds=0.7)
    await wait_for_status(task_store, task, {"running"}, timeout_s=15)
    leaving.signal(signal.SIGTERM)
    assert await leaving.wait(timeout_s=15) == 0
    runner_processes()
    final = await wait_for_status(task_store, task, {"completed"}, timeout_s=20)
    assert final.phase == "complete"


async def test_runner_with_a_bad_task_module_exits_2_with_one_clear_line(
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    process = runner_processes(RUNNER_TASK_MODULES="no.such.module")
    assert await process.wait(timeout_s=15) == 2
    assert "RUNNER_TASK_MODULES: cannot import 'no.such.module'" in process.log()
    assert "Traceback" not in process.log()


async def test_runner_starts_while_postgres_is_unreachable_and_does_not_crash(
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    process = runner_processes(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    await asyncio.sleep(2.0)
    assert process.proc.poll() is None, process.log()
    assert "claim failed, retrying" in process.log()
    process.signal(signal.SIGTERM)
    assert await process.wait(timeout_s=15) == 0
