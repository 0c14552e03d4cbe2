"""Starts whole runners on the in-memory store and the recording publisher, and stops them."""

from __future__ import annotations

import asyncio
from typing import Any

from praxiom_progress.runner.handlers import HandlerRegistry
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.settings import Settings
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher

#: Every interval shrunk; no server is named because none is reached.
FAST = Settings(
    runner_concurrency=4,
    runner_heartbeat_interval_s=0.05,
    runner_stale_after_s=0.3,
    runner_reaper_interval_s=0.05,
    runner_poll_interval_s=0.05,
    runner_shutdown_grace_s=0.2,
)


def registry_of(**handlers: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    for task_type, run in handlers.items():
        registry.register(task_type, run)
    return registry


class RunnerKit:
    def __init__(self, store: FakeRunnerStore, publisher: RecordingPublisher) -> None:
        self.store = store
        self.publisher = publisher
        self._running: dict[Runner, asyncio.Task[None]] = {}

    def start(self, registry: HandlerRegistry, **settings: Any) -> Runner:
        """A runner running on the fakes, with `settings` over `FAST`."""
        runner = Runner(FAST.replace(**settings), self.store, self.publisher, registry)  # type: ignore[arg-type]
        self._running[runner] = asyncio.create_task(runner.run(), name="unit-runner")
        return runner

    async def ended(self, runner: Runner, timeout_s: float) -> None:
        """Wait until `runner.run()` has returned."""
        await asyncio.wait_for(asyncio.shield(self._running[runner]), timeout_s)

    async def stop_all(self) -> None:
        for runner, task in self._running.items():
            runner.stop(force=True)
            await asyncio.wait_for(task, 5)
        self._running.clear()
