"""`runner.writer.TaskWriter`: what a write committed is published, after it, and nothing else."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.models import Task
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher


async def test_the_writer_publishes_only_what_a_write_committed(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    store.add("sample")
    [task] = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=1)
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    assert task.claim_token is not None
    wrong_token = await writer.write_one(
        store.fail_task(task_id=task.id, claim_token=task.id, error="not ours")
    )
    assert wrong_token is None and publisher.published == []
    failed = await writer.write_one(
        store.fail_task(task_id=task.id, claim_token=task.claim_token, error="It broke")
    )
    assert failed is not None and publisher.published == [failed]


async def test_many_tasks_are_published_in_one_call(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    store.add("sample")
    store.add("sample")
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    claimed = await writer.publish(
        await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=2)
    )
    assert len(claimed) == 2 and publisher.calls == [list(claimed)]
    assert publisher.published == [store.tasks[t.id] for t in claimed]


class SlowPublisher(RecordingPublisher):
    """Holds each round trip until released, so the test sees what queues behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def publish_tasks(self, tasks: Sequence[Task]) -> int:
        count = await super().publish_tasks(tasks)
        await self.release.wait()
        return count


async def test_publishes_made_while_one_is_in_flight_leave_together_in_order(
    store: FakeRunnerStore,
) -> None:
    for _ in range(4):
        store.add("sample")
    tasks = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=4)
    publisher = SlowPublisher()
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    first = asyncio.create_task(writer.publish(tasks[:1]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert publisher.calls == [tasks[:1]]  # a lone publish goes at once
    writer.publish_soon(tasks[1:2])  # a claim's: not waited for
    rest = [asyncio.create_task(writer.publish([task])) for task in tasks[2:]]
    await asyncio.sleep(0.01)
    assert not first.done()  # each caller returns only once its round trip is done
    publisher.release.set()
    await asyncio.gather(first, *rest)
    assert publisher.calls == [tasks[:1], tasks[1:]]  # in the order they were made


async def test_a_cancelled_callers_tasks_are_published_all_the_same(
    store: FakeRunnerStore,
) -> None:
    store.add("sample")
    store.add("sample")
    a, b = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=2)
    publisher = SlowPublisher()
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    first = asyncio.create_task(writer.publish([a]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(writer.publish([b]))
    await asyncio.sleep(0.01)
    second.cancel()  # its write committed: it must still be published
    publisher.release.set()
    await first
    for _ in range(5):  # the sender's next round trip
        await asyncio.sleep(0)
    assert publisher.published == [a, b]


async def test_a_publisher_that_raises_neither_hangs_nor_stops_later_publishes(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    store.add("sample")
    [task] = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=1)
    broken = RecordingPublisher()

    async def bug(tasks: Sequence[Task]) -> int:
        raise RuntimeError("a bug")

    broken.publish_tasks = bug  # type: ignore[method-assign]
    writer = TaskWriter(broken)  # type: ignore[arg-type]
    assert await asyncio.wait_for(writer.publish([task]), 1.0) == [task]
    broken.publish_tasks = publisher.publish_tasks  # type: ignore[method-assign]
    await asyncio.wait_for(writer.publish([task]), 1.0)
    assert publisher.published == [task]


async def test_a_publisher_that_raises_is_logged_with_the_count_and_the_traceback(
    store: FakeRunnerStore, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        store.add("sample")
    tasks = await store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=2)
    broken = RecordingPublisher()

    async def bug(tasks: Sequence[Task]) -> int:
        raise RuntimeError("a bug")

    broken.publish_tasks = bug  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="runner"):
        await TaskWriter(broken).publish(tasks)  # type: ignore[arg-type]
    [record] = caplog.records
    assert record.getMessage() == "publishing 2 task(s) failed"
    assert record.action == "publish_error"  # type: ignore[attr-defined]
    assert record.exc_info is not None and str(record.exc_info[1]) == "a bug"


async def test_a_publish_the_loop_gets_to_past_its_deadline_is_not_sent(
    store: FakeRunnerStore, publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that blocks the loop once it has reported holds its report's publish back;
    past `within_s` the task may have been reaped and that end published, so it is dropped,
    and what comes after it still goes."""
    for _ in range(3):
        store.add("sample")
    late, on_time, after = await store.claim_tasks(
        runner_id="unit", timeouts={"sample": 60.0}, limit=3
    )
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    writer.publish_soon([late], within_s=0.05)
    writer.publish_soon([on_time])  # no deadline: sent however late
    time.sleep(0.1)  # noqa: ASYNC251  # the handler holding the loop before the sender runs
    with caplog.at_level(logging.WARNING, logger="runner"):
        await writer.publish([after])
    assert publisher.published == [on_time, after]
    (record,) = caplog.records
    assert record.action == "publish_dropped_late"  # type: ignore[attr-defined]
    assert record.getMessage().startswith("1 progress publish(es) not sent: the loop got to ")
    assert record.getMessage().endswith(
        "past their deadline (a handler blocking it?); PostgreSQL has their state"
    )
    assert 0.0 < record.args[1] < 1.0  # type: ignore[index]  # how late: about 0.05 s
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="runner"):
        writer.publish_soon([late], within_s=0.05)  # in time, this time
        await writer.publish([])
        await asyncio.sleep(0)
    assert publisher.published == [on_time, after, late]
    assert caplog.records == []  # nothing dropped, nothing said
