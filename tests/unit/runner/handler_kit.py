"""A `TaskExecutor` on the in-memory store, for the tests of how each kind of handler runs:
registers one handler with any `register()` options and runs one claimed task of it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, MutableMapping
from typing import Any
from uuid import UUID

from praxiom_progress.runner.batch import ProgressBatcher
from praxiom_progress.runner.execution import HeldTask, RunnerStats, TaskExecutor
from praxiom_progress.runner.throttle import ProgressThrottle
from praxiom_progress.runner.writer import TaskWriter
from praxiom_progress.taskstate.models import Task
from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher


class HandlerKit:
    def __init__(
        self,
        store: FakeRunnerStore,
        publisher: RecordingPublisher,
        *,
        state: MutableMapping[str, Any] | None = None,
        kill_grace_s: float = 2.0,
        min_interval_s: float = 0.0,
        on_handler_done: Callable[[], None] | None = None,
    ) -> None:
        """`min_interval_s` 0: every report is written (the throttle's own tests set it)."""
        self.store = store
        self.publisher = publisher
        self.stats = RunnerStats()
        writer = TaskWriter(publisher)  # type: ignore[arg-type]
        batcher = ProgressBatcher(store.report_progress, writer)
        self.throttle = ProgressThrottle(batcher, min_interval_s)
        self.executor = TaskExecutor(
            store,  # type: ignore[arg-type]
            writer,
            self.throttle,
            self.stats,
            state=state,
            kill_grace_s=kill_grace_s,
            on_handler_done=on_handler_done,
        )

    async def start(
        self,
        run: Any,
        *,
        timeout_s: float = 10.0,
        task_params: dict[str, Any] | None = None,
        spawned_by: str | None = None,
        **options: Any,
    ) -> HeldTask:
        from praxiom_progress.runner.handlers import HandlerRegistry

        registry = HandlerRegistry()
        registry.register("sample", run, **options)
        handler = registry.get("sample")
        task_id = self.store.add("sample", **(task_params or {}))
        self.store.tasks[task_id] = dataclasses.replace(
            self.store.tasks[task_id], spawned_by=spawned_by
        )
        [claimed] = await self.store.claim_tasks(
            runner_id="unit", timeouts={"sample": timeout_s}, limit=1
        )
        assert handler is not None and claimed.claim_token is not None
        held = HeldTask(claimed.id, claimed.claim_token, handler, timeout_s, claimed.params or {})
        held.job = asyncio.create_task(self.executor.execute(held, claimed))
        return held

    async def ended(self, held: HeldTask, within_s: float = 5.0) -> Task:
        assert held.job is not None
        await asyncio.wait_for(asyncio.shield(held.job), within_s)
        return self.store.tasks[held.task_id]

    def published_after(self, version: int, held: HeldTask) -> list[str]:
        """What was published of the task past `version`: nothing, for a withdrawn task."""
        return [p.status for p in self.publisher.of(held.task_id) if p.version > version]

    def task(self, task_id: UUID) -> Task:
        return self.store.tasks[task_id]
