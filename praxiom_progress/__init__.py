"""praxiom-progress: live progress for long-running background tasks.

Everything the server distribution installs lives under this one package, so an
application's own `cli`, `gateway` or `runner` modules never shadow ours. What an
application uses is importable from here:

- handler authors: `HandlerRegistry`, `TaskContext` (async handlers), `SyncTaskContext`
  (plain `def` handlers), `TaskResult`, `TaskFailed`, `TaskLost`;
- producers: `spawn` / `cancel` (an aiopg connection or cursor) and `spawn_sync` /
  `cancel_sync` (psycopg2), inside the application's own transaction, and what they raise:
  `SpawnRejected`, `NotFound`, `TaskAlreadyFinished`.
"""

from importlib.metadata import PackageNotFoundError, version

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
