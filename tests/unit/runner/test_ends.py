"""`runner.ends.EndBatcher` on the in-memory store: ends made together leave in one statement,
each caller learns its own task's outcome, and a failed statement reaches every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID, uuid4

import pytest

from praxiom_progress.runner.ends import End, EndBatcher
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner.fake_store import FakeRunnerStore


async def claimed(store: FakeRunnerStore, n: int) -> list[Task]:
    for _ in range(n):
        store.add("sample")
    return await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=n)


async def steps(n: int) -> None:
    """Let the loop run n steps: counted in steps, not time, so a busy machine cannot fail it."""
    for _ in range(n):
        await asyncio.sleep(0)


def token(task: Task) -> UUID:
    assert task.claim_token is not None
    return task.claim_token


async def test_ends_made_together_share_one_statement_and_each_gets_its_own_task(
    store: FakeRunnerStore,
) -> None:
    done, broken, gone = await claimed(store, 3)
    store.cancel(gone.id, notify=False)
    ends = EndBatcher(store.end_tasks)

    completed, failed, lost = await asyncio.gather(
        ends.complete(task_id=done.id, claim_token=token(done), message="Done",
                      result_data={"rows": 3}),
        ends.fail(task_id=broken.id, claim_token=token(broken), error="It broke"),
        ends.complete(task_id=gone.id, claim_token=token(gone), message="Done",
                      result_data={}),
    )  # fmt: skip

    assert [args["task_ids"] for args in store.called("end_tasks")] == [
        [done.id, broken.id, gone.id]
    ]
    assert completed is not None and failed is not None and lost is None
    assert (completed.id, completed.status, completed.message, completed.result_data) == (
        done.id, TaskStatus.COMPLETED, "Done", {"rows": 3}
    )  # fmt: skip
    assert (failed.id, failed.status, failed.error) == (broken.id, TaskStatus.FAILED, "It broke")
    assert store.tasks[gone.id].status == TaskStatus.CANCELLED


async def test_a_lone_end_goes_at_once_and_later_ones_group_behind_it() -> None:
    statements: list[list[End]] = []
    release = asyncio.Event()

    async def slow_write(ends: Sequence[End]) -> list[Task]:
        statements.append(list(ends))
        await release.wait()
        return []

    batcher = EndBatcher(slow_write, in_flight=1)
    tokens = [(f"{n:032x}", f"{n + 100:032x}") for n in range(4)]
    calls = [
        asyncio.create_task(batcher.fail(task_id=UUID(t), claim_token=UUID(c), error="x"))
        for t, c in tokens[:1]
    ]
    await asyncio.sleep(0.01)
    assert len(statements) == 1  # the lone end did not wait for company
    calls += [
        asyncio.create_task(batcher.fail(task_id=UUID(t), claim_token=UUID(c), error="x"))
        for t, c in tokens[1:]
    ]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*calls) == [None] * 4  # nothing matched: all None
    assert [len(ends) for ends in statements] == [1, 3]


async def test_a_failed_statement_reaches_every_caller_of_it(store: FakeRunnerStore) -> None:
    a, b = await claimed(store, 2)
    store.fail_next("complete_task")
    ends = EndBatcher(store.end_tasks)

    results = await asyncio.gather(
        *(ends.complete(task_id=t.id, claim_token=token(t), message="m", result_data={})
          for t in (a, b)),
        return_exceptions=True,
    )  # fmt: skip

    assert all(isinstance(r, StoreUnavailable) for r in results)
    # Retried, each is written once: the guard keeps a second write from matching.
    again = await ends.complete(task_id=a.id, claim_token=token(a), message="m", result_data={})
    assert again is not None and again.status == TaskStatus.COMPLETED
    twice = await ends.complete(task_id=a.id, claim_token=token(a), message="m", result_data={})
    assert twice is None


async def test_one_tasks_ends_never_share_a_statement(store: FakeRunnerStore) -> None:
    [task] = await claimed(store, 1)
    ends = EndBatcher(store.end_tasks)
    first, second = await asyncio.gather(
        ends.fail(task_id=task.id, claim_token=token(task), error="first"),
        ends.fail(task_id=task.id, claim_token=token(task), error="second"),
    )
    assert [len(args["task_ids"]) for args in store.called("end_tasks")] == [1, 1]
    assert first is not None and first.error == "first" and second is None


def test_the_result_goes_as_json_text_and_a_failure_has_none() -> None:
    done = End(uuid4(), uuid4(), True, "m", {"a": [1, "b"]})
    assert done.result_json() == '{"a": [1, "b"]}'
    assert End(uuid4(), uuid4(), False, error="e").result_json() is None
    with pytest.raises(ValueError):
        End(uuid4(), uuid4(), True, "m", {"x": float("nan")}).result_json()


class HeldWrites:
    """A write that records each statement's size and returns only once released."""

    def __init__(self) -> None:
        self.statements: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, ends: Sequence[End]) -> list[Task]:
        self.statements.append(len(ends))
        await self.release.wait()
        return []


async def test_more_statements_in_flight_let_an_end_go_without_waiting_for_the_first() -> None:
    slow_write = HeldWrites()
    statements, release = slow_write.statements, slow_write.release

    batcher = EndBatcher(slow_write, in_flight=2)
    first = asyncio.create_task(batcher.fail(task_id=uuid4(), claim_token=uuid4(), error="x"))
    await steps(20)
    assert statements == [1]
    second = asyncio.create_task(batcher.fail(task_id=uuid4(), claim_token=uuid4(), error="x"))
    await steps(20)
    assert statements == [1, 1]  # the second did not wait for the first to return
    release.set()
    assert await asyncio.gather(first, second) == [None, None]


async def test_no_statement_carries_more_ends_than_max_batch() -> None:
    slow_write = HeldWrites()
    statements, release = slow_write.statements, slow_write.release

    batcher = EndBatcher(slow_write, max_batch=2)
    calls = [
        asyncio.create_task(batcher.fail(task_id=uuid4(), claim_token=uuid4(), error="x"))
        for _ in range(5)
    ]
    await steps(20)
    release.set()
    assert await asyncio.gather(*calls) == [None] * 5
    assert statements == [2, 2, 1]
