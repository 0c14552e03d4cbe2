"""Following a whole workspace: `watch_workspace`, every task's payloads on one stream.

`GET /api/workspaces/{id}/progress` sends the current state of the workspace's tasks (those
not finished, and those finished recently), then every change: spawns, progress, ends. It
never ends by itself; when the connection drops, `watch_workspace` reconnects with backoff
and `Last-Event-ID`, and the gateway sends every task that changed meanwhile. Per task,
versions only go up: a repeat of a version already yielded is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import aiohttp

from praxiom_client.errors import StreamBroken, StreamLost, StreamUnreachable, refused
from praxiom_client.payload import TaskPayload
from praxiom_client.sse import LineSplitter, SseParser
from praxiom_client.stream import (
    DEFAULT_POLICY,
    STREAM_TIMEOUT,
    USER_AGENT,
    OnRetry,
    RetryPolicy,
    connection_reason,
    error_body,
    parse_payload,
    retryable,
)


@dataclass
class _Place:
    """Where a workspace follower stands: the event id to resume from, the newest version
    yielded per task, and what the current attempt brought."""

    last_id: str | None = None
    versions: dict[str, int] = field(default_factory=dict)
    connected_once: bool = False
    got_event: bool = False
    reason: str = ""

    def newer(self, payload: TaskPayload) -> bool:
        if payload["version"] <= self.versions.get(payload["id"], 0):
            return False
        self.versions[payload["id"]] = payload["version"]
        return True


async def watch_workspace(
    url: str,
    workspace_id: str | UUID,
    token: str,
    *,
    session: aiohttp.ClientSession | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_retry: OnRetry | None = None,
    user_agent: str = USER_AGENT,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the workspace's task payloads as they come, until the caller stops.

    Raises `Unauthenticated`, `Forbidden` or `TaskNotFound` (no such workspace) when the
    gateway refuses, also on a reconnection (access lost mid-way is a 403);
    `StreamUnreachable` when the first connection fails; `StreamLost` after
    `policy.max_failures` reconnections in a row brought nothing.
    """
    progress_url = f"{url.rstrip('/')}/api/workspaces/{workspace_id}/progress"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent}
    own_session = session is None
    if session is None:
        session = aiohttp.ClientSession(timeout=STREAM_TIMEOUT)
    place, failures = _Place(), 0
    try:
        while True:
            place.got_event = False
            try:
                async for payload in _attempt(session, progress_url, headers, place):
                    yield payload
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if not place.connected_once:
                    raise StreamUnreachable(connection_reason(exc)) from exc
                place.reason = connection_reason(exc)
            failures = 0 if place.got_event else failures + 1
            if failures >= policy.max_failures:
                raise StreamLost(
                    f"lost the stream and {failures} reconnections failed: {place.reason}"
                )
            delay = policy.delay(failures)
            if on_retry is not None:
                on_retry(failures, delay, place.reason)
            await sleep(delay)
    finally:
        if own_session:
            await session.close()


async def _attempt(
    session: aiohttp.ClientSession, progress_url: str, headers: dict[str, str], place: _Place
) -> AsyncGenerator[TaskPayload, None]:
    sent = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if place.last_id is not None:
        sent["Last-Event-ID"] = place.last_id
    async with session.get(progress_url, headers=sent) as response:
        if response.status != 200:
            body = await error_body(response)
            if not (place.connected_once and retryable(response.status)):
                raise refused(response.status, response.reason or "", body)
            place.reason = f"{response.status} {response.reason or ''}".strip()
            return
        if response.content_type != "text/event-stream":
            raise StreamBroken(
                f"{progress_url} did not answer with an event stream (got {response.content_type})"
            )
        place.connected_once = True
        splitter, parser = LineSplitter(), SseParser(last_event_id=place.last_id)
        async for chunk in response.content.iter_any():
            for line in splitter.feed(chunk):
                event = parser.feed(line)
                # An `id:` line alone moves the resume point too (the gateway sends one when a
                # read brought nothing new).
                place.last_id = parser.last_event_id
                if event is None or event.event != "message":
                    continue
                place.got_event = True
                payload = parse_payload(event.data)
                if place.newer(payload):
                    yield payload
        place.reason = "the stream ended"
