"""`runner.writer.TaskWriter`: what a write committed is published, after it, and nothing else."""

from __future__ import annotations

from praxiom_progress.runner.writer import TaskWriter
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


async def test_many_tasks_are_published_in_one_call_after_their_write(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    store.add("sample")
    store.add("sample")
    writer = TaskWriter(publisher)  # type: ignore[arg-type]
    claimed = await writer.write_many(
        store.claim_tasks(runner_id="unit", timeouts={"sample": 60.0}, limit=2)
    )
    assert len(claimed) == 2 and publisher.calls == [list(claimed)]
    assert publisher.published == [store.tasks[t.id] for t in claimed]
