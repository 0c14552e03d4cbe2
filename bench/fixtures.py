"""What the gateway scenarios stream: a token, many running tasks, and a paced publisher.

Streams watch distinct running tasks (one browser tab per task), made through the public
stores: `TaskStore.insert_task`, then `RunnerStore.claim_tasks` under a runner id that no
process serves, so the tasks stay `running` and the gateway keeps their streams open.
Updates are published straight to Redis the way the runner does (full payloads from
`task_payload`, each with a higher `version`), so a scenario measures the gateway alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.channels import progress_channel, workspace_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore

STREAM_TASK_TYPE = "bench_stream"
HOLDER_RUNNER_ID = "bench-holder (no such process)"
MIN_TICK_S = 0.002


@dataclass
class Fixture:
    token: str
    workspace_id: UUID
    task_ids: list[UUID]
    payloads: dict[UUID, dict[str, Any]]  # each task's payload as claimed, to publish from


async def insert_tasks(
    db: Database, workspace_id: UUID, task_type: str, count: int, parallel: int = 8
) -> None:
    store = TaskStore(db)
    left = iter(range(count))

    async def worker() -> None:
        for _ in left:
            await store.insert_task(workspace_id=workspace_id, task_type=task_type, params={})

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def prepare(settings: Settings, tasks: int) -> Fixture:
    db = await Database.connect(settings, maxsize=10, name="praxiom-bench")
    try:
        issued = await AccountStore(db).create_token(workspace="bench", user="bench")
        await insert_tasks(db, issued.workspace_id, STREAM_TASK_TYPE, tasks)
        runner_store = RunnerStore(db)
        claimed_tasks: list[Task] = []
        while len(claimed_tasks) < tasks:
            claimed = await runner_store.claim_tasks(
                runner_id=HOLDER_RUNNER_ID, timeouts={STREAM_TASK_TYPE: 86400.0}, limit=1000
            )
            if not claimed:
                break
            claimed_tasks.extend(claimed)
    finally:
        await db.close()
    payloads = {task.id: task_payload(task) for task in claimed_tasks}
    return Fixture(issued.token, issued.workspace_id, list(payloads), payloads)


class Publisher:
    """Publishes benchmark updates, each a full payload with a higher version and `sent_ns`;
    with `workspace_of`, on each task's workspace channel too, as the runner's publisher does."""

    def __init__(
        self,
        redis: aioredis.Redis,
        payloads: dict[UUID, dict[str, Any]],
        workspace_of: dict[UUID, UUID] | None = None,
    ) -> None:
        self.redis = redis
        self.payloads = {task_id: dict(p) for task_id, p in payloads.items()}
        self.channels = {
            task_id: (progress_channel(task_id),)
            + ((workspace_channel(workspace_of[task_id]),) if workspace_of else ())
            for task_id in payloads
        }

    def _next(self, task_id: UUID) -> str:
        payload = self.payloads[task_id]
        payload["version"] += 1
        payload["result_data"] = {"sent_ns": time.monotonic_ns()}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def run(self, task_ids: Sequence[UUID], per_task_per_s: float, seconds: float) -> int:
        """Publish `per_task_per_s` updates a second to each task for `seconds`, spread evenly
        over each second (message k at k / total rate, in slices of at least 2 ms); returns
        how many were published."""
        total_rate = len(task_ids) * per_task_per_s
        count = int(total_rate * seconds)
        started = time.monotonic()
        sent = 0
        while sent < count:
            due = min(count, int((time.monotonic() - started) * total_rate) + 1)
            if due > sent:
                batch = [task_ids[k % len(task_ids)] for k in range(sent, due)]
                if len(batch) == 1 and len(self.channels[batch[0]]) == 1:
                    await self.redis.publish(self.channels[batch[0]][0], self._next(batch[0]))
                else:
                    pipe = self.redis.pipeline(transaction=False)
                    for task_id in batch:
                        data = self._next(task_id)
                        for channel in self.channels[task_id]:
                            pipe.publish(channel, data)
                    await pipe.execute()
                sent = due
            # Wake for the next message, but no more often than every 2 ms: at high rates
            # the messages due meanwhile go out together in one pipeline.
            delay = started + sent / total_rate - time.monotonic()
            await asyncio.sleep(max(delay, MIN_TICK_S) if delay > 0 else 0)
        return sent
