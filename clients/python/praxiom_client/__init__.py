"""The praxiom-progress client: spawn, read, cancel and follow tasks over the gateway's API.

    from praxiom_client import Client

    async with Client("http://gateway:8080", token) as client:
        task = await client.spawn("validation_kit", params={"step_seconds": 1})
        async for payload in client.watch(task["id"]):
            print(payload["status"], payload["progress_pct"], payload["message"])

Needs only aiohttp. See `Client` for what each call raises.
"""

from praxiom_client.client import REQUEST_TIMEOUT, Client, watch_task, watch_workspace
from praxiom_client.errors import (
    Conflict,
    Forbidden,
    Invalid,
    PraxiomError,
    Refused,
    StreamBroken,
    StreamError,
    StreamLost,
    StreamRefused,
    StreamUnreachable,
    TaskNotFound,
    Unauthenticated,
    Unreachable,
)
from praxiom_client.payload import SpawnedTask, TaskPage, TaskPayload, TaskRecord
from praxiom_client.policy import DEFAULT_POLICY, OnRetry, RetryPolicy, retry_after_seconds
from praxiom_client.sse import LineSplitter, SseEvent, SseParser
from praxiom_client.stream import (
    STREAM_TIMEOUT,
    TERMINAL_STATUSES,
    connection_reason,
    follow,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_POLICY",
    "REQUEST_TIMEOUT",
    "STREAM_TIMEOUT",
    "TERMINAL_STATUSES",
    "Client",
    "Conflict",
    "Forbidden",
    "Invalid",
    "LineSplitter",
    "OnRetry",
    "PraxiomError",
    "Refused",
    "RetryPolicy",
    "SpawnedTask",
    "SseEvent",
    "SseParser",
    "StreamBroken",
    "StreamError",
    "StreamLost",
    "StreamRefused",
    "StreamUnreachable",
    "TaskNotFound",
    "TaskPage",
    "TaskPayload",
    "TaskRecord",
    "Unauthenticated",
    "Unreachable",
    "__version__",
    "connection_reason",
    "follow",
    "retry_after_seconds",
    "watch_task",
    "watch_workspace",
]
