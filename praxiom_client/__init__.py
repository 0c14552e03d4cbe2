"""A subscriber for internal services: follow a task's progress from the gateway.

    from praxiom_client import watch_task

    async for payload in watch_task("http://gateway:8080", task_id, token):
        print(payload["status"], payload["progress_pct"], payload["message"])

`watch_workspace` follows every task of a workspace on one stream, the same way.

Needs only aiohttp. See `watch_task` for the exceptions it raises.
"""

from praxiom_client.errors import (
    Forbidden,
    StreamBroken,
    StreamError,
    StreamLost,
    StreamRefused,
    StreamUnreachable,
    TaskNotFound,
    Unauthenticated,
)
from praxiom_client.payload import TaskPayload
from praxiom_client.sse import LineSplitter, SseEvent, SseParser
from praxiom_client.stream import (
    DEFAULT_POLICY,
    TERMINAL_STATUSES,
    RetryPolicy,
    connection_reason,
    follow,
    watch_task,
)
from praxiom_client.workspace import watch_workspace

__all__ = [
    "DEFAULT_POLICY",
    "TERMINAL_STATUSES",
    "Forbidden",
    "LineSplitter",
    "RetryPolicy",
    "SseEvent",
    "SseParser",
    "StreamBroken",
    "StreamError",
    "StreamLost",
    "StreamRefused",
    "StreamUnreachable",
    "TaskNotFound",
    "TaskPayload",
    "Unauthenticated",
    "connection_reason",
    "follow",
    "watch_task",
    "watch_workspace",
]
