"""praxiom-progress: live progress for long-running background tasks.

Everything the server distribution installs lives under this one package, so an
application's own `cli`, `gateway` or `runner` modules never shadow ours. What an
application uses is importable from here:

- handler authors: `HandlerRegistry`, `TaskContext` (async handlers), `SyncTaskContext`
  (plain `def` handlers), `TaskResult`, `TaskFailed`, `TaskLost`;
- producers: `spawn` / `cancel` (an aiopg connection or cursor) and `spawn_sync` /
  `cancel_sync` (psycopg2), inside the application's own transaction, and what they raise:
  `SpawnRejected`, `NotFound`, `TaskAlreadyFinished`.

They are imported when first used, so a process that needs none of them (the CLI, a
gateway) does not pay for the database drivers and the handler API at start.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from praxiom_progress.producer import cancel, cancel_sync, spawn, spawn_sync
    from praxiom_progress.runner.handlers import (
        HandlerRegistry,
        SyncTaskContext,
        TaskContext,
        TaskFailed,
        TaskLost,
        TaskResult,
    )
    from praxiom_progress.taskstate.errors import NotFound
    from praxiom_progress.taskstate.spawning import SpawnRejected
    from praxiom_progress.taskstate.store import TaskAlreadyFinished

try:
    __version__ = version("praxiom-progress")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: Each public name and the module that defines it.
_HOMES = {
    **dict.fromkeys(["spawn", "spawn_sync", "cancel", "cancel_sync"], "producer"),
    **dict.fromkeys(
        ["HandlerRegistry", "SyncTaskContext", "TaskContext", "TaskFailed", "TaskLost"],
        "runner.handlers",
    ),
    "TaskResult": "runner.handlers",
    "NotFound": "taskstate.errors",
    "SpawnRejected": "taskstate.spawning",
    "TaskAlreadyFinished": "taskstate.store",
}

__all__ = [
    "HandlerRegistry",
    "NotFound",
    "SpawnRejected",
    "SyncTaskContext",
    "TaskAlreadyFinished",
    "TaskContext",
    "TaskFailed",
    "TaskLost",
    "TaskResult",
    "__version__",
    "cancel",
    "cancel_sync",
    "spawn",
    "spawn_sync",
]

if not TYPE_CHECKING:  # for mypy, the imports above; a typo stays an error there

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'praxiom_progress' has no attribute {name!r}")
        value = getattr(import_module(f"praxiom_progress.{home}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
