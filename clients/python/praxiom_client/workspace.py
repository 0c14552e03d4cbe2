"""Following a whole workspace: `follow_workspace`, under `Client.watch_workspace`.

`GET /api/workspaces/{id}/progress` sends the current state of the workspace's tasks (those
not finished, and those finished recently), then every change: spawns, progress, ends. It
never ends by itself; when the connection drops, `follow_workspace` reconnects with backoff
and `Last-Event-ID`, and the gateway sends every task that changed meanwhile. Per task,
versions only go up: a repeat of a version already yielded is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field

import aiohttp

from praxiom_client.errors import Refused, StreamBroken
from praxiom_client.payload import TaskPayload
from praxiom_client.policy import OnRetry, RetryPolicy
from praxiom_client.sse import LineSplitter, SseParser
from praxiom_client.stream import _opened, _payload, reconnecting


@dataclass
class _Place:
    """Where a workspace follower stands: the event id to resume from, the newest version
    yielded per task, and what the current attempt brought."""

    last_id: str | None = None
    versions: dict[str, int] = field(default_factory=dict)
    connected_once: bool = False
    got_event: bool = False
    reason: str = ""
    retry_after_s: float | None = None
    refusal: Refused | None = None

    def newer(self, payload: TaskPayload) -> bool:
        if not isinstance(payload.get("id"), str):
            raise StreamBroken("the server sent a payload without a task id")
        if payload["version"] <= self.versions.get(payload["id"], 0):
            return False
        self.versions[payload["id"]] = payload["version"]
        return True


async def follow_workspace(
    session: aiohttp.ClientSession,
    progress_url: str,
    headers: Mapping[str, str],
    *,
    policy: RetryPolicy,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the workspace's task payloads as they come, until the caller stops. A first
    connection that fails is not retried; one answered 503 or 429 is, like a reconnection;
    a refusal (401, 403: access lost, 404: no such workspace) raises, even on a reconnection."""
    place = _Place()
    attempts = reconnecting(
        lambda: _attempt(session, progress_url, headers, place),
        place,
        progress_url,
        policy=policy,
        on_retry=on_retry,
        sleep=sleep,
    )
    async with aclosing(attempts):
        async for payload in attempts:
            yield payload


async def _attempt(
    session: aiohttp.ClientSession,
    progress_url: str,
    headers: Mapping[str, str],
    place: _Place,
) -> AsyncGenerator[TaskPayload, None]:
    """One connection: its new payloads; `place` says how it ended."""
    sent = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if place.last_id is not None:
        sent["Last-Event-ID"] = place.last_id
    async with session.get(progress_url, headers=sent) as response:
        if not await _opened(response, place, progress_url):
            return
        splitter, parser = LineSplitter(), SseParser(last_event_id=place.last_id)
        async for chunk in response.content.iter_any():
            for line in splitter.feed(chunk):
                event = parser.feed(line)
                # An `id:` line alone moves the resume point too (the gateway sends one when
                # a read brought nothing new).
                place.last_id = parser.last_event_id
                if event is None or event.event != "message":
                    continue
                place.got_event = True
                payload = _payload(event.data)
                if place.newer(payload):
                    yield payload
        place.reason = "the stream ended"
