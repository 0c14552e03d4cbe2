"""A runner's start-up and shutdown hooks and its loop watchdog, on the in-memory store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import pytest

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.runner.metrics import RunnerMetrics
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.status import TaskStatus
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.runner_kit import FAST, RunnerKit


async def test_start_up_hooks_fill_the_state_every_handler_sees_before_any_claim(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    events: list[str] = []
    registry = HandlerRegistry()

    def plain_hook(state: MutableMapping[str, Any]) -> None:
        events.append(f"plain hook, {len(store.called('claim_tasks'))} claims")
        state["client"] = "http-session"

    async def async_hook(state: MutableMapping[str, Any]) -> None:
        await asyncio.sleep(0)
        state["model"] = "loaded"

    async def closing_hook(state: MutableMapping[str, Any]) -> None:
        events.append(f"closed {sorted(state)}")

    @registry.register("uses_state")
    async def run(task: TaskContext) -> dict[str, Any]:
        return dict(task.state)

    registry.on_startup(plain_hook)
    registry.on_startup(async_hook)
    registry.on_shutdown(closing_hook)
    task_id = store.add("uses_state")
    runner = runners.start(registry)
    for _ in range(100):
        if store.tasks[task_id].status == TaskStatus.COMPLETED:
            break
        await asyncio.sleep(0.01)
    assert store.tasks[task_id].result_data == {"client": "http-session", "model": "loaded"}
    assert runner.state == {"client": "http-session", "model": "loaded"}
    runner.stop()
    await runners.ended(runner, 2)
    assert events == ["plain hook, 0 claims", "closed ['client', 'model']"]


async def test_a_failing_start_up_hook_stops_the_runner_before_it_claims(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> None:
    registry = HandlerRegistry()
    registry.register("sample", _noop)

    def broken(state: MutableMapping[str, Any]) -> None:
        raise ConnectionError("model server down")

    registry.on_startup(broken)
    runner = Runner(FAST, store, publisher, registry)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError, match="model server down"):
        await asyncio.wait_for(runner.run(), 2)
    assert store.called("claim_tasks") == []


async def _noop(task: TaskContext) -> dict[str, Any]:
    return {}


async def test_an_async_handler_that_blocks_the_loop_is_logged_and_counted(
    runners: RunnerKit, store: FakeRunnerStore, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()

    @registry.register("blocking")
    async def run(task: TaskContext) -> dict[str, Any]:
        time.sleep(0.5)  # noqa: ASYNC251 (blocking code where it must not be)
        return {}

    task_id = store.add("blocking")
    with caplog.at_level(logging.WARNING, logger="runner"):
        runner = runners.start(registry, runner_loop_stall_s=0.1)
        for _ in range(200):
            if store.tasks[task_id].status == TaskStatus.COMPLETED:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the watchdog's second line, once the loop answers
    assert runner.watchdog.stalls == {"blocking": 1}
    stalled = [r for r in caplog.records if getattr(r, "action", None) == "loop_stalled"]
    assert len(stalled) == 1
    assert stalled[0].task_type == "blocking" and stalled[0].task_id == str(task_id)  # type: ignore[attr-defined]
    assert str(task_id) in stalled[0].getMessage()
    unblocked = [r for r in caplog.records if getattr(r, "action", None) == "loop_unblocked"]
    assert len(unblocked) == 1 and "blocked for 0." in unblocked[0].getMessage()

    metrics = RunnerMetrics()
    metrics.watch(runner)
    value = metrics.registry.get_sample_value(
        "praxiom_runner_loop_stalls_total", {"task_type": "blocking"}
    )
    assert value == 1
    for gauge in ("praxiom_runner_handler_threads", "praxiom_runner_handler_processes"):
        assert metrics.registry.get_sample_value(gauge) == 0


async def test_a_responsive_loop_counts_no_stall(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    registry = HandlerRegistry()
    registry.register("sample", _noop)
    runner = runners.start(registry, runner_loop_stall_s=0.1)
    for _ in range(5):
        store.add("sample")
        await asyncio.sleep(0.1)
    assert runner.watchdog.stalls == {}


async def test_a_failing_shutdown_hook_is_logged_and_the_next_still_runs(
    store: FakeRunnerStore, publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()
    registry.register("sample", _noop)
    closed: list[str] = []

    def broken(state: MutableMapping[str, Any]) -> None:
        raise RuntimeError("already closed")

    registry.on_shutdown(broken)
    registry.on_shutdown(lambda state: closed.append("second"))
    runner = Runner(FAST, store, publisher, registry)  # type: ignore[arg-type]
    running = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)
    runner.stop()
    with caplog.at_level(logging.ERROR, logger="runner"):
        await asyncio.wait_for(running, 2)
    assert closed == ["second"]
    assert [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "hook_error"]
