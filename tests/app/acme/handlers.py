"""Task types, written against the public handler API only."""

import time
from typing import Any

from marshmallow import Schema, fields

from praxiom_progress import (
    HandlerRegistry,
    SyncTaskContext,
    TaskContext,
    TaskFailed,
    TaskLost,
    TaskResult,
)


class ImportParams(Schema):
    url = fields.Url(required=True)


async def import_feed(task: TaskContext) -> TaskResult:
    url: str = task.params["url"]
    await task.report_progress("download", 10, f"Downloading {url}")
    if task.attempt > 3:
        raise TaskFailed("The feed kept failing")
    return TaskResult({"items": 3, "by": task.spawned_by}, message="Imported 3 items.")


def render(task: SyncTaskContext) -> dict[str, Any]:
    for page in range(1, 4):
        time.sleep(0.01)
        try:
            task.report_progress("render", page * 100 / 3, f"Page {page} of 3")
        except TaskLost:
            return {}
    return {"pages": 3, "workspace": str(task.workspace_id)}


def register(registry: HandlerRegistry) -> None:
    registry.register("import_feed", import_feed, params=ImportParams, timeout_s=60)
    registry.register("render", render, label="Render", isolation="process")
