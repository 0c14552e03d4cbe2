"""Calling one handler the way its kind needs: an `async def` on the loop, a plain `def` in a
thread (`runner.threads`), `isolation="process"` in a child process (`runner.isolation`);
each with its params loaded by its schema and what it knows of its task."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from marshmallow import ValidationError

from praxiom_progress.runner.handlers import (
    HandlerFn,
    ProgressSink,
    SyncHandlerFn,
    TaskContext,
    TaskFailed,
    TaskHandler,
    TaskInfo,
    is_async_handler,
)
from praxiom_progress.runner.isolation import HandlerProcesses
from praxiom_progress.runner.threads import HandlerThreads
from praxiom_progress.taskstate.models import Task


class ParamsInvalid(TaskFailed):
    """The task's params do not load with its type's schema: no attempt will do better."""


class HandlerInvoker:
    """Holds what every call shares: the runner's `state`, its threads and its processes."""

    def __init__(
        self, *, state: MutableMapping[str, Any] | None = None, kill_grace_s: float = 2.0
    ) -> None:
        self.state: MutableMapping[str, Any] = {} if state is None else state
        self.threads = HandlerThreads()
        self.processes = HandlerProcesses(kill_grace_s=kill_grace_s)

    async def call(self, handler: TaskHandler, task: Task, sink: ProgressSink) -> Any:
        """What the handler returned; raises what it raised (`ParamsInvalid` before it ran)."""
        info = TaskInfo(
            task_id=task.id,
            task_type=handler.task_type,
            params=load_params(handler, task.params or {}),
            workspace_id=task.workspace_id,
            spawned_by=task.spawned_by,
            attempt=max(task.attempt or 0, 1),  # 0 only when the claim did not count it
            state=self.state,
        )
        if handler.isolation == "process":
            return await self.processes.call(handler.run, info, sink)
        if not is_async_handler(handler.run):
            return await self.threads.call(cast(SyncHandlerFn, handler.run), info, sink)
        context = TaskContext.from_info(info, sink)
        return await cast(HandlerFn, handler.run)(context)


def load_params(handler: TaskHandler, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """The params as the type's schema loads them; `ParamsInvalid` naming each bad field."""
    if handler.params is None:
        return params
    try:
        loaded = handler.params().load(dict(params))
    except ValidationError as exc:
        raise ParamsInvalid(f"Invalid params: {_field_errors(exc.messages)}") from exc
    return cast(Mapping[str, Any], loaded)


def _field_errors(messages: Any, prefix: str = "params") -> str:
    """`params.rows: Not a valid integer.; params.to.email: …` on one line."""
    if isinstance(messages, Mapping):
        parts = []
        for key, value in messages.items():
            where = prefix if key == "_schema" else f"{prefix}.{key}"
            parts.append(_field_errors(value, where))
        return "; ".join(parts)
    if isinstance(messages, list | tuple):
        texts = [m for m in messages if not isinstance(m, Mapping | list | tuple)]
        nested = [_field_errors(m, prefix) for m in messages if isinstance(m, Mapping)]
        line = f"{prefix}: {' '.join(str(t) for t in texts)}" if texts else ""
        return "; ".join(part for part in (line, *nested) if part)
    return f"{prefix}: {messages}"
