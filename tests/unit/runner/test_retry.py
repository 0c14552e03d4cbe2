"""Opt-in retries (`runner.retry`, and the runner letting a task go for one) on the in-memory
store: which failures retry, the pending `retrying` state in between, the wake-up for a due
retry, and the last attempt failing as without retries."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from praxiom_progress.runner.handlers import HandlerFn, HandlerRegistry, TaskContext, TaskFailed
from praxiom_progress.runner.retry import JITTER, MAX_RETRY_DELAY_S, RetryPolicy
from praxiom_progress.taskstate.models import Task
from tests.conftest import wait_for
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.runner_kit import RunnerKit

# -- the policy ----------------------------------------------------------------------------------


def test_each_wait_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(random.Random(7))
    for attempt, nominal in ((1, 10.0), (2, 20.0), (3, 40.0)):
        for _ in range(50):
            delay = policy.delay_s(10.0, attempt)
            assert nominal * (1 - JITTER) <= delay <= nominal * (1 + JITTER)
    assert policy.delay_s(10.0, 40) == MAX_RETRY_DELAY_S
    assert RetryPolicy(max_delay_s=5.0).delay_s(10.0, 1) == 5.0


def test_the_message_names_the_wait_the_next_attempt_and_the_error() -> None:
    retry = RetryPolicy(random.Random(1), max_delay_s=20.0).after(
        first_s=100.0, failed_attempt=1, max_attempts=3, error="ConnectionError: reset"
    )
    assert retry is not None and retry.delay_s == 20.0
    assert retry.message == "Retrying in 20s (attempt 2 of 3): ConnectionError: reset"
    short = RetryPolicy(max_delay_s=0.05).after(
        first_s=1.0, failed_attempt=2, max_attempts=3, error="OSError"
    )
    assert short is not None and short.message == "Retrying in 0.05s (attempt 3 of 3): OSError"


def test_the_last_attempt_gets_no_retry() -> None:
    policy = RetryPolicy()
    assert policy.after(first_s=1.0, failed_attempt=3, max_attempts=3, error="x") is None
    assert policy.after(first_s=1.0, failed_attempt=1, max_attempts=1, error="x") is None


# -- the runner ----------------------------------------------------------------------------------


class Flaky:
    """Raises `error` on the first `failures` attempts, then returns the attempt it ran on."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("connection reset by peer")
        self.attempts: list[int] = []

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        self.attempts.append(len(self.attempts) + 1)
        await task.report_progress("working", 30, "Working")
        if len(self.attempts) <= self.failures:
            raise self.error
        return {"attempt": len(self.attempts)}


def registry_with(run: HandlerFn, **options: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("flaky", run, **options)
    return registry


async def ended(store: FakeRunnerStore, task_id: Any, timeout_s: float = 3) -> Task:
    async def terminal() -> Task | None:
        task = store.tasks[task_id]
        return task if task.is_terminal else None

    return await wait_for(terminal, timeout_s=timeout_s, interval_s=0.005)


async def test_a_failed_attempt_goes_back_to_pending_retrying_then_completes(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    flaky = Flaky(failures=1)
    # The slow poll is an hour: only the runner's own wake-up for the due retry claims it.
    runner = runners.start(
        registry_with(flaky, retries=2, retry_backoff_s=0.1), runner_poll_interval_s=3600
    )
    task_id = store.add("flaky")
    final = await ended(store, task_id)

    assert final.status == "completed" and final.result_data == {"attempt": 2}
    assert (final.attempt, final.max_attempts) == (2, 3)
    published = publisher.of(task_id)
    retrying = [p for p in published if p.status == "pending"]
    assert len(retrying) == 1
    [pending] = retrying
    assert (pending.phase, pending.progress_pct, pending.error) == ("retrying", 0, None)
    assert pending.message.startswith("Retrying in 0.")
    assert pending.message.endswith("s (attempt 2 of 3): ConnectionError: connection reset by peer")
    assert pending.claim_token is None and pending.run_after is not None
    claims = [
        p for p in published if (p.status, p.phase, p.message) == ("running", "running", "Started")
    ]
    assert [c.attempt for c in claims] == [1, 2]
    # Not claimed again before its run_after.
    assert claims[1].started_at is not None and claims[1].started_at >= pending.run_after
    assert runner.stats.retried == 1 and runner.stats.failed == 0


async def test_the_last_attempt_fails_as_without_retries(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    flaky = Flaky(failures=5)
    runners.start(registry_with(flaky, retries=1, retry_backoff_s=0.01))
    task_id = store.add("flaky")
    final = await ended(store, task_id)
    assert final.status == "failed"
    assert final.error == "ConnectionError: connection reset by peer"
    assert flaky.attempts == [1, 2] and final.attempt == 2


@pytest.mark.parametrize(
    ("error", "options"),
    [
        pytest.param(TaskFailed("bad input"), {}, id="task-failed"),
        pytest.param(ConnectionError("x"), {"retries": 0}, id="no-retries"),
    ],
)
async def test_failures_that_do_not_retry(
    store: FakeRunnerStore, runners: RunnerKit, error: Exception, options: dict[str, Any]
) -> None:
    flaky = Flaky(failures=1, error=error)
    runners.start(registry_with(flaky, **{"retries": 2, "retry_backoff_s": 0.01, **options}))
    task_id = store.add("flaky")
    final = await ended(store, task_id)
    assert final.status == "failed" and flaky.attempts == [1]
    assert store.called("retry_task") == []


class SlowFirst:
    """Outlives its timeout on the first attempt only."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts == 1:
            await asyncio.sleep(10)
        return {"attempt": self.attempts}


@pytest.mark.parametrize("retry_on_timeout", [False, True])
async def test_a_timeout_retries_only_when_asked(
    store: FakeRunnerStore, runners: RunnerKit, retry_on_timeout: bool
) -> None:
    slow = SlowFirst()
    registry = registry_with(
        slow,
        retries=1,
        retry_backoff_s=0.01,
        retry_on_timeout=retry_on_timeout,
        timeout_s=0.1,
    )
    runners.start(registry)
    task_id = store.add("flaky")
    final = await ended(store, task_id)
    if retry_on_timeout:
        assert final.status == "completed" and final.result_data == {"attempt": 2}
    else:
        assert final.status == "failed" and final.error == "Flaky task timed out after 0.1s"
        assert slow.attempts == 1


async def test_a_claim_skips_a_task_whose_retry_is_not_due(store: FakeRunnerStore) -> None:
    task_id = store.add("flaky")
    later = datetime.now(UTC) + timedelta(seconds=60)
    store.tasks[task_id] = dataclasses.replace(store.tasks[task_id], run_after=later)
    assert await store.claim_tasks(runner_id="u", timeouts={"flaky": 5.0}, limit=5) == []
    store.tasks[task_id] = dataclasses.replace(
        store.tasks[task_id], run_after=datetime.now(UTC) - timedelta(seconds=1)
    )
    [claimed] = await store.claim_tasks(
        runner_id="u", timeouts={"flaky": 5.0}, limit=5, max_attempts={"flaky": 4}
    )
    assert (claimed.attempt, claimed.max_attempts, claimed.run_after) == (1, 4, None)
    assert (claimed.phase, claimed.progress_pct, claimed.message) == ("running", 0, "Started")


async def test_a_cancel_while_a_retry_waits_ends_the_task(
    store: FakeRunnerStore, publisher: RecordingPublisher, runners: RunnerKit
) -> None:
    flaky = Flaky(failures=1)
    runners.start(registry_with(flaky, retries=1, retry_backoff_s=0.3))
    task_id = store.add("flaky")

    async def retrying() -> bool:
        return store.tasks[task_id].phase == "retrying"

    await wait_for(retrying, timeout_s=2, interval_s=0.005)
    store.cancel(task_id)
    await asyncio.sleep(0.5)
    assert store.tasks[task_id].status == "cancelled" and flaky.attempts == [1]
