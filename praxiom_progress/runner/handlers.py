"""The handler API: what a task type's code receives, returns and raises.

A handler is `async def handler(task: TaskContext) -> TaskResult | dict`, or a plain
`def handler(task: SyncTaskContext) -> TaskResult | dict` for blocking code (it runs in a
worker thread, and its `task.report_progress(...)` is a plain call). It reads
`task.params`, reports progress as it goes, and returns the final `result_data`.
Deployments register their handlers from the modules named in `RUNNER_TASK_MODULES`: each
such module defines `register(registry: HandlerRegistry) -> None`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self
from uuid import UUID

from marshmallow import Schema

from praxiom_progress.runner.importable import importable_name
from praxiom_progress.taskstate.settings import Settings

_TASK_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_PHASE_LENGTH = 100
_MAX_MESSAGE_LENGTH = 2000


def task_label(task_type: str) -> str:
    """The label of a type registered without one: `deep_dive` → `Deep Dive`. (The built-in
    types register theirs, `FS-Research` among them, in runner/builtin.py.)"""
    return task_type.replace("_", " ").title()


def timeout_error(label: str, timeout_s: float) -> str:
    """The spec's timeout error, `Validation Kit task timed out after 240s`."""
    return f"{label} task timed out after {timeout_s:g}s"


class TaskFailed(Exception):
    """Raised by a handler for an expected failure; its text is the task's `error` as is."""


class TaskLost(Exception):
    """This runner no longer holds the task (cancelled, reaped, re-queued): stop, write nothing."""


@dataclass(frozen=True)
class TaskResult:
    """What a handler returns: the final `result_data`, and optionally the final message."""

    result_data: Mapping[str, Any] = field(default_factory=dict)
    message: str | None = None


class ProgressSink(Protocol):
    async def __call__(self, phase: str, progress_pct: int, message: str) -> None: ...


class SyncProgressSink(Protocol):
    def __call__(self, phase: str, progress_pct: int, message: str) -> None: ...


class TaskInfo:
    """What a handler knows of its task: its identity and params, whom it runs for (the
    workspace, and `spawned_by`: the spawning user's id or "service:<name>"), which attempt
    this is (1 on the first run), and `state`, the runner process's shared mapping filled by
    the start-up hooks (a process-isolated handler gets its child process's own, empty one).
    `params` are as the type's `params` schema loaded them, when it has one."""

    def __init__(
        self,
        *,
        task_id: UUID,
        task_type: str,
        params: Mapping[str, Any],
        workspace_id: UUID | None = None,
        spawned_by: str | None = None,
        attempt: int = 1,
        state: MutableMapping[str, Any] | None = None,
        sink: Any = None,
    ) -> None:
        self.task_id = task_id
        self.task_type = task_type
        self.params = params
        self.workspace_id = workspace_id
        self.spawned_by = spawned_by  # the spawning user's id, or "service:<name>"
        self.attempt = attempt  # 1 on the first run; retries count up
        self.state: MutableMapping[str, Any] = {} if state is None else state
        self._sink = sink  # where a context's reports go (None: a bare description)

    @classmethod
    def from_info(cls, info: TaskInfo, sink: Any) -> Self:
        """The same task, handed to a handler with `sink` taking its reports."""
        return cls(
            task_id=info.task_id,
            task_type=info.task_type,
            params=info.params,
            workspace_id=info.workspace_id,
            spawned_by=info.spawned_by,
            attempt=info.attempt,
            state=info.state,
            sink=sink,
        )


class TaskContext(TaskInfo):
    """Handed to an `async def` handler, which runs on the runner's event loop; built with a
    `sink=` (a ProgressSink) that writes its reports."""

    _sink: ProgressSink

    async def report_progress(self, phase: str, progress_pct: float, message: str) -> None:
        """Persist, then publish, the task's progress (`progress_pct` may be a float: it is
        rounded). Reports closer together than RUNNER_PROGRESS_MIN_INTERVAL return at once and
        only the newest is written (a new phase always is).

        Bad input raises `ValueError` and writes nothing; `TaskLost` means the
        task was cancelled or reaped and the handler must stop.
        """
        await self._sink(phase, check_progress(phase, progress_pct, message), message)


class SyncTaskContext(TaskInfo):
    """Handed to a plain `def` handler, which runs in a worker thread (or a child process):
    `report_progress` is a plain call that returns once the report is written. Built with a
    `sink=` (a SyncProgressSink)."""

    _sink: SyncProgressSink

    def report_progress(self, phase: str, progress_pct: float, message: str) -> None:
        """As `TaskContext.report_progress`, from the handler's thread: bad input raises
        `ValueError`; `TaskLost` means the task was cancelled, reaped or timed out, and the
        handler must stop."""
        self._sink(phase, check_progress(phase, progress_pct, message), message)


def check_progress(phase: Any, progress_pct: Any, message: Any) -> int:
    """The percentage to write (a float is rounded: `done / total * 100` is what handlers
    have); bad input raises ValueError before anything is written."""
    if not isinstance(phase, str) or not phase.strip():
        raise ValueError(f"phase must be a non-empty string, got {phase!r}")
    if len(phase) > _MAX_PHASE_LENGTH:
        raise ValueError(f"phase must be at most {_MAX_PHASE_LENGTH} characters")
    if isinstance(progress_pct, bool) or not isinstance(progress_pct, int | float):
        raise ValueError(f"progress_pct must be a number from 0 to 100, got {progress_pct!r}")
    if not 0 <= progress_pct <= 100:  # NaN too: every comparison with it is false
        raise ValueError(f"progress_pct must be from 0 to 100, got {progress_pct}")
    if not isinstance(message, str):
        raise ValueError(f"message must be a string, got {message!r}")
    if len(message) > _MAX_MESSAGE_LENGTH:
        raise ValueError(f"message must be at most {_MAX_MESSAGE_LENGTH} characters")
    return round(progress_pct)


HandlerFn = Callable[[TaskContext], Awaitable["TaskResult | Mapping[str, Any] | None"]]
SyncHandlerFn = Callable[[SyncTaskContext], "TaskResult | Mapping[str, Any] | None"]
AnyHandlerFn = HandlerFn | SyncHandlerFn


def is_async_handler(fn: Callable[..., Any]) -> bool:
    """An `async def` (or an object whose `__call__` is one) runs on the loop; anything else
    is blocking code and runs in a worker thread."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (a callable object's own method)
    )


#: Where a handler runs: "auto" (an async one on the runner's loop, a plain `def` in a worker
#: thread) or "process" (a child process, terminated at its timeout or on cancel).
Isolation = Literal["auto", "process"]
#: A start-up or shutdown hook: called once per runner process with the shared state.
Hook = Callable[[MutableMapping[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class TaskHandler:
    task_type: str
    run: AnyHandlerFn
    label: str
    timeout_s: float | None = None
    description: str = ""
    params: type[Schema] | None = None  # loads and validates the task's params
    isolation: Isolation = "auto"
    retries: int = 0  # further attempts after a failure (not TaskFailed; a timeout only if asked)
    retry_backoff_s: float = 10.0  # the first retry's wait; doubled each time, with jitter
    retry_on_timeout: bool = False

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


class HandlerRegistry:
    """Which handler runs which task type; a runner only claims types it has here."""

    def __init__(self) -> None:
        self._handlers: dict[str, TaskHandler] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []

    def register(
        self,
        task_type: str,
        run: AnyHandlerFn | None = None,
        *,
        label: str | None = None,
        timeout_s: float | None = None,
        description: str = "",
        params: type[Schema] | None = None,
        isolation: Isolation = "auto",
        retries: int = 0,
        retry_backoff_s: float = 10.0,
        retry_on_timeout: bool = False,
    ) -> Any:
        """Register `run` for `task_type`; without `run`, works as a decorator.

        `isolation="process"` runs the handler in a child process, killed at its timeout or
        on cancel even when it never yields; the child imports it by module and qualified
        name, so it must be a module-level function (not a lambda, a closure or a method).
        """
        _check_registration(task_type, timeout_s, params, isolation, retries, retry_backoff_s)
        if task_type in self._handlers:
            raise ValueError(f"a handler for {task_type!r} is already registered")

        def add(fn: AnyHandlerFn) -> AnyHandlerFn:
            if isolation == "process":
                importable_name(fn)  # raises ValueError naming what is wrong
            self._handlers[task_type] = TaskHandler(
                task_type,
                fn,
                label or task_label(task_type),
                timeout_s,
                description,
                params,
                isolation,
                retries,
                retry_backoff_s,
                retry_on_timeout,
            )
            return fn

        return add if run is None else add(run)

    def on_startup(self, hook: Hook) -> Hook:
        """Run `hook(state)` once when a runner process starts (shared clients, models)."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run `hook(state)` once when a runner process stops."""
        self.shutdown_hooks.append(hook)
        return hook

    def get(self, task_type: str) -> TaskHandler | None:
        return self._handlers.get(task_type)

    def label_for(self, task_type: str) -> str:
        handler = self._handlers.get(task_type)
        return handler.label if handler else task_label(task_type)

    def timeouts(self, settings: Settings) -> dict[str, float]:
        """Each registered type's timeout: `TASK_TIMEOUTS` by name, else the handler's own,
        else `TASK_TIMEOUTS`'s default."""
        return {
            task_type: settings.task_timeouts.get(task_type)
            or handler.timeout_s
            or settings.timeout_for(task_type)
            for task_type, handler in self._handlers.items()
        }

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


def _check_registration(
    task_type: str,
    timeout_s: float | None,
    params: type[Schema] | None,
    isolation: str,
    retries: int,
    retry_backoff_s: float,
) -> None:
    """Refuse a registration that could only fail at run time, at start-up instead."""
    if not _TASK_TYPE.match(task_type):
        raise ValueError(
            f"task type must match {_TASK_TYPE.pattern} (lowercase, digits, _), got {task_type!r}"
        )
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be greater than 0, got {timeout_s!r}")
    if params is not None and not (isinstance(params, type) and issubclass(params, Schema)):
        raise ValueError(f"params must be a marshmallow Schema class, got {params!r}")
    if isolation not in ("auto", "process"):
        raise ValueError(f"isolation must be 'auto' or 'process', got {isolation!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number of 0 or more, got {retries!r}")
    if not retry_backoff_s >= 0:
        raise ValueError(f"retry_backoff_s must be 0 or more, got {retry_backoff_s!r}")


class TaskModuleError(Exception):
    """A module named in `RUNNER_TASK_MODULES` could not be loaded."""


def load_registry(modules: tuple[str, ...]) -> HandlerRegistry:
    """Build the registry from the `register(registry)` function of each module."""
    registry = HandlerRegistry()
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise TaskModuleError(f"RUNNER_TASK_MODULES: cannot import {name!r}: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise TaskModuleError(
                f"RUNNER_TASK_MODULES: module {name!r} has no register(registry) function"
            )
        try:
            register(registry)
        except Exception as exc:
            raise TaskModuleError(f"RUNNER_TASK_MODULES: {name!r}: {exc}") from exc
    if not registry:
        raise TaskModuleError("RUNNER_TASK_MODULES: the named modules registered no handler")
    return registry
