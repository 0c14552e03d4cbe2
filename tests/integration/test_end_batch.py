"""Group commit of task ends against real PostgreSQL: completions and failures made together
leave in one statement, each is written once, exactly as its own statement wrote it before, and
a task no longer held is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

from praxiom_progress.runner.batch import Report
from praxiom_progress.runner.ends import End, EndBatcher
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import claim_by_hand, spawn


async def running_tasks(db: Database, store: TaskStore, workspace_id: UUID, n: int) -> list[Task]:
    tasks = []
    for _ in range(n):
        task_id = await spawn(store, workspace_id, "research")
        await claim_by_hand(db, task_id, runner_id="r", started_ago_s=0, beat_ago_s=0, timeout_s=60)
        task = await RunnerStore(db).get_task(task_id)
        assert task is not None and task.claim_token is not None
        tasks.append(task)
    return tasks


def token(task: Task) -> UUID:
    assert task.claim_token is not None
    return task.claim_token


async def test_ends_made_together_are_one_statement_each_written_as_before(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    done, broken, gone = await running_tasks(db, task_store, workspace_id, 3)
    store = RunnerStore(db)
    [reported] = await store.report_progress([Report(broken.id, token(broken), "half", 50, "Half")])
    await db.fetch_all(
        "UPDATE background_tasks SET claim_token = gen_random_uuid() WHERE id = %(id)s",
        {"id": gone.id},
    )  # reaped and claimed again by another runner: not ours any more
    statements: list[int] = []

    async def counted(ends: Sequence[End]) -> list[Task]:
        statements.append(len(ends))
        return await store.end_tasks(ends)

    batcher = EndBatcher(counted)
    completed, failed, lost = await asyncio.gather(
        batcher.complete(task_id=done.id, claim_token=token(done), message="Done",
                         result_data={"rows": 3, "name": "ü"}),
        batcher.fail(task_id=broken.id, claim_token=token(broken), error="It broke"),
        batcher.complete(task_id=gone.id, claim_token=token(gone), message="Done",
                         result_data={}),
    )  # fmt: skip

    assert statements == [3]
    assert lost is None
    assert completed is not None and failed is not None
    assert (completed.status, completed.phase, completed.progress_pct, completed.message) == (
        TaskStatus.COMPLETED, "complete", 100, "Done"
    )  # fmt: skip
    assert completed.result_data == {"rows": 3, "name": "ü"} and completed.error is None
    assert completed.completed_at is not None and completed.version == done.version + 1
    # A failure keeps the last reported phase, pct, message and result.
    assert (failed.status, failed.error, failed.phase, failed.progress_pct, failed.message) == (
        TaskStatus.FAILED, "It broke", "half", 50, "Half"
    )  # fmt: skip
    assert failed.result_data == reported.result_data and failed.workspace_id == workspace_id
    still = await store.get_task(gone.id)
    assert still is not None and still.status == TaskStatus.RUNNING

    # The same ends again (a retry after a lost answer) match nothing: never written twice.
    again = await store.end_tasks(
        [
            End(done.id, token(done), True, "Done", {}),
            End(broken.id, token(broken), False, error="x"),
        ]
    )
    assert again == []
