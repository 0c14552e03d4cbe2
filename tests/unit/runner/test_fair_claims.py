"""Fair claims on the in-memory store, in the order `praxiom_claim_tasks` claims: the workspace
with the fewest running first, none past the cap; and the runner hands its cap to each claim."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from praxiom_progress.runner.handlers import TaskContext
from praxiom_progress.taskstate.status import TaskStatus
from tests.conftest import wait_for
from tests.unit.runner.fake_store import FakeRunnerStore
from tests.unit.runner.runner_kit import RunnerKit, registry_of

TIMEOUTS = {"hold": 60.0}


async def test_the_next_task_goes_to_the_workspace_with_the_fewest_running(
    store: FakeRunnerStore,
) -> None:
    a, b = uuid4(), uuid4()
    for _ in range(50):
        store.add("hold", workspace=a)
    first = await store.claim_tasks(runner_id="u", timeouts=TIMEOUTS, limit=4)
    assert {task.workspace_id for task in first} == {a}
    b_task = store.add("hold", workspace=b)  # the newest of all

    [claimed] = await store.claim_tasks(runner_id="u", timeouts=TIMEOUTS, limit=1)

    assert claimed.id == b_task


async def test_no_workspace_is_claimed_past_the_cap(store: FakeRunnerStore) -> None:
    a, b = uuid4(), uuid4()
    for _ in range(10):
        store.add("hold", workspace=a)
    b_task = store.add("hold", workspace=b)

    claimed = await store.claim_tasks(runner_id="u", timeouts=TIMEOUTS, limit=10, workspace_cap=3)

    assert sorted(task.workspace_id == a for task in claimed) == [False, True, True, True]
    assert store.tasks[b_task].status == TaskStatus.RUNNING
    assert (
        await store.claim_tasks(runner_id="u", timeouts=TIMEOUTS, limit=10, workspace_cap=3) == []
    )


async def test_the_runner_claims_under_its_workspace_cap(
    store: FakeRunnerStore, runners: RunnerKit
) -> None:
    async def hold(task: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    a = uuid4()
    for _ in range(6):
        store.add("hold", workspace=a)
    runners.start(registry_of(hold=hold), workspace_max_running=2)

    async def two_running() -> bool:
        running = [t for t in store.tasks.values() if t.status == TaskStatus.RUNNING]
        return len(running) == 2

    await wait_for(two_running, timeout_s=2.0)
    await asyncio.sleep(0.2)  # four slots, but A stays at its cap while the runner polls
    assert await two_running()
    assert {args["workspace_cap"] for args in store.called("claim_tasks")} == {2}
