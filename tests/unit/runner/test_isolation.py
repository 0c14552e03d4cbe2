"""`isolation="process"`: real child processes, killed at the timeout and on cancel even when
they never yield, their own deaths reported by signal or exit code, and none left behind."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from praxiom_progress.runner.execution import HeldTask
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner import process_handlers as handlers
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.handler_kit import HandlerKit
from tests.unit.runner.runner_kit import RunnerKit


@pytest.fixture
def kit(store: FakeRunnerStore, publisher: RecordingPublisher) -> HandlerKit:
    return HandlerKit(store, publisher, state={"runner": "only"}, kill_grace_s=0.5)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def child_pid(store: FakeRunnerStore, held: HeldTask, within_s: float = 10.0) -> int:
    """The pid the child reported first (its message reads `pid N`)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        message = store.tasks[held.task_id].message
        if message.startswith("pid "):
            return int(message.split()[1].rstrip(","))
        await asyncio.sleep(0.01)
    raise AssertionError(f"no pid reported: {store.tasks[held.task_id]}")


async def test_a_sync_handler_runs_in_a_child_and_reports_through_the_runner(
    kit: HandlerKit,
) -> None:
    held = await kit.start(
        handlers.counts, isolation="process", task_params={"rows": 3}, spawned_by="u1"
    )
    stored = await kit.ended(held, 20)
    assert stored.status == TaskStatus.COMPLETED, stored.error
    assert stored.message == "Counted in a child"
    data = dict(stored.result_data)
    pid = data.pop("pid")
    assert pid != os.getpid() and not alive(pid)
    assert data == {
        "params": {"rows": 3},
        "attempt": 1,
        "state": {},  # the child's own, not the runner's
        "workspace_id": str(stored.workspace_id),
        "spawned_by": "u1",
    }
    published = [(p.phase, p.progress_pct) for p in kit.publisher.of(held.task_id)]
    assert published == [("running", 0), ("counting", 10), ("counting", 60), ("complete", 100)]
    assert kit.executor.invoker.processes.alive == set()


async def test_an_async_handler_runs_in_a_child_too(kit: HandlerKit) -> None:
    held = await kit.start(handlers.counts_async, isolation="process")
    stored = await kit.ended(held, 20)
    assert stored.status == TaskStatus.COMPLETED, stored.error
    assert stored.result_data["async"] is True and not alive(stored.result_data["pid"])


async def test_code_that_never_yields_is_killed_at_its_timeout(kit: HandlerKit) -> None:
    """Acceptance: `while True: pass` with a 2 s timeout fails with the timeout message within
    4 s and leaves no child process."""
    held = await kit.start(handlers.spins, isolation="process", timeout_s=2.0)
    started = time.monotonic()
    pid = await child_pid(kit.store, held)
    stored = await kit.ended(held, 10)
    assert time.monotonic() - started < 4.0
    assert (stored.status, stored.error) == ("failed", "Sample task timed out after 2s")
    assert not alive(pid)
    assert kit.stats.timed_out == 1


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(kit: HandlerKit) -> None:
    held = await kit.start(handlers.spins_ignoring_sigterm, isolation="process", timeout_s=1.0)
    pid = await child_pid(kit.store, held)
    started = time.monotonic()
    stored = await kit.ended(held, 10)
    assert stored.error == "Sample task timed out after 1s"
    assert time.monotonic() - started < 1.0 + 0.5 + 0.5  # the rest of the timeout, the grace
    assert not alive(pid)


@pytest.mark.parametrize(
    ("run", "error"),
    [
        (handlers.exits, "Handler process exited with code 3 before it returned"),
        (handlers.segfaults, "Handler process was killed by SIGSEGV"),
        (handlers.killed, "Handler process was killed by SIGKILL"),
        (handlers.raises, "ValueError: bad row 7"),
        (handlers.fails, "No rows to export"),
    ],
)
async def test_a_child_s_own_end_fails_the_task_with_one_line(
    kit: HandlerKit, run: Any, error: str
) -> None:
    held = await kit.start(run, isolation="process")
    pid = await child_pid(kit.store, held)
    stored = await kit.ended(held, 20)
    assert (stored.status, stored.error) == ("failed", error)
    assert not alive(pid)


async def test_a_withdrawn_task_s_child_gets_task_lost_at_its_next_report(
    kit: HandlerKit,
) -> None:
    held = await kit.start(handlers.reports_until_lost, isolation="process")
    pid = await child_pid(kit.store, held)
    kit.store.cancel(held.task_id, notify=False)  # cancelled elsewhere: the next write misses
    cancelled = kit.store.tasks[held.task_id]
    await kit.ended(held, 10)
    assert kit.store.tasks[held.task_id] == cancelled
    assert kit.stats.withdrawn == 1 and not alive(pid)


async def test_cancel_kills_a_child_that_never_yields_within_a_second(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    """Acceptance: cancel kills it within 1 s."""
    registry = HandlerRegistry()
    registry.register("spins", handlers.spins, isolation="process", timeout_s=60)
    runner = runners.start(registry, runner_kill_grace_s=2.0)
    task_id = store.add("spins")
    pid = await _reported_pid(store.tasks, task_id)
    store.cancel(task_id)  # the gateway's cancel, with its NOTIFY
    cancelled_at = time.monotonic()
    for _ in range(500):
        if not alive(pid):
            break
        await asyncio.sleep(0.01)
    assert time.monotonic() - cancelled_at < 1.0
    assert store.tasks[task_id].status == TaskStatus.CANCELLED
    assert runner.invoker.processes.alive == set()


async def test_a_child_still_running_at_shutdown_is_killed_and_its_task_handed_back(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    registry = HandlerRegistry()
    registry.register("spins", handlers.spins, isolation="process", timeout_s=60)
    runner = runners.start(registry, runner_shutdown_grace_s=0.1, runner_kill_grace_s=0.5)
    task_id = store.add("spins")
    pid = await _reported_pid(store.tasks, task_id)
    runner.stop()
    await runners.ended(runner, 5)
    assert not alive(pid)
    assert store.tasks[task_id].status == TaskStatus.PENDING


async def _reported_pid(tasks: dict[Any, Task], task_id: Any) -> int:
    for _ in range(1000):
        message = tasks[task_id].message
        if message.startswith("pid "):
            return int(message.split()[1].rstrip(","))
        await asyncio.sleep(0.01)
    raise AssertionError("no pid reported")


def test_registration_refuses_a_process_handler_the_child_cannot_import() -> None:
    registry = HandlerRegistry()

    async def closure(task: TaskContext) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="module-level function"):
        registry.register("a", lambda task: {}, isolation="process")
    with pytest.raises(ValueError, match="module-level function"):
        registry.register("b", closure, isolation="process")
    registry.register("c", handlers.counts, isolation="process")  # importable: accepted
    registry.register("d", closure)  # a closure is fine on the loop
    assert "a" not in registry and "b" not in registry
