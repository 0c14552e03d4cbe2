"""Following a task's progress stream: `watch_task` for services, `follow` underneath it.

`follow` turns a `GET /api/tasks/{id}/progress` into the task's payloads,
each version once and in increasing order, until the terminal one; when the
connection drops it reconnects with backoff (and jitter, so a fleet of
subscribers does not come back in lockstep) and `Last-Event-ID`, so the
gateway resumes where it left off.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import cast
from uuid import UUID

import aiohttp

from praxiom_client.errors import StreamBroken, StreamLost, StreamUnreachable, refused
from praxiom_client.payload import TaskPayload
from praxiom_client.sse import LineSplitter, SseEvent, SseParser

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
#: No total: a task may run for hours. Each read is bounded instead, well above the gateway's
#: 15 s keep-alive comments, so a silently dead connection is noticed and reconnected.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
USER_AGENT = "praxiom-client"
_MAX_ERROR_BODY = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between reconnections: `first_delay_s`, doubling, capped at `max_delay_s`, each
    shortened by up to `jitter` (a fraction) at random; give up after `max_failures`
    consecutive attempts that brought nothing."""

    first_delay_s: float = 0.5
    max_delay_s: float = 5.0
    max_failures: int = 10
    jitter: float = 0.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before the next attempt, after `failures` failed attempts in a row."""
        base = min(self.first_delay_s * 2 ** min(failures, 32), self.max_delay_s)
        return base * (1 - self.jitter * rand()) if self.jitter else base


#: What `watch_task` uses: the CLI's backoff, with up to half of each wait taken off at random.
DEFAULT_POLICY = RetryPolicy(jitter=0.5)

OnRetry = Callable[[int, float, str], None]  # (failures so far, delay, reason)


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("Connection refused", "timed out"...)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return f"unknown host ({os_error.strerror or os_error})"
        if os_error.errno:  # asyncio's strerror is "Connect call failed (...)": say why
            return os.strerror(os_error.errno)
        return os_error.strerror or str(os_error) or type(os_error).__name__
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection was cut"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(str(exc)) or type(exc).__name__


async def watch_task(
    url: str,
    task_id: str | UUID,
    token: str,
    *,
    session: aiohttp.ClientSession | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_retry: OnRetry | None = None,
    user_agent: str = USER_AGENT,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the task's payloads (dicts, as `/status` returns them) until the terminal one.

    `url` is the gateway's base URL. Raises `Unauthenticated`, `Forbidden` or
    `TaskNotFound` when the gateway refuses (also on a reconnection: losing access
    mid-task is a 403), `StreamUnreachable` when the first connection fails, and
    `StreamLost` after `policy.max_failures` reconnections in a row brought nothing.
    Pass a `session` to share its connection pool; it should have no total timeout.
    """
    base = f"{url.rstrip('/')}/api/tasks/{task_id}"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent}
    own_session = session is None
    if session is None:
        session = aiohttp.ClientSession(timeout=STREAM_TIMEOUT)
    try:
        async for payload in follow(
            session,
            f"{base}/progress",
            f"{base}/status",
            headers,
            policy=policy,
            on_retry=on_retry,
        ):
            yield payload
    finally:
        if own_session:
            await session.close()


def parse_payload(data: str) -> TaskPayload:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("id"), str)
        or not isinstance(payload.get("status"), str)
        or not isinstance(payload.get("version"), int)
        or isinstance(payload.get("version"), bool)
    ):
        raise StreamBroken(f"the server sent an event that is not a task payload: {data!r:.80}")
    return cast(TaskPayload, payload)


async def error_body(response: aiohttp.ClientResponse) -> str:
    raw = await response.content.read(_MAX_ERROR_BODY)
    return raw.decode("utf-8", errors="replace")


def retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


@dataclass
class _Position:
    """Where a follower stands: the version to resume from, and what the current attempt
    brought (whether it connected, got an event, reached the end, or why it stopped)."""

    last_version: int = 0
    last_id: str | None = None
    connected_once: bool = False
    got_event: bool = False
    finished: bool = False
    reason: str = ""

    def request_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        sent = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None or self.last_version:
            sent["Last-Event-ID"] = self.last_id or str(self.last_version)
        return sent

    def accept(self, event: SseEvent | None) -> TaskPayload | None:
        """The payload of a new task event; None for anything else, or a version seen."""
        if event is None or event.event != "message":
            return None
        self.got_event = True
        self.last_id = event.id
        payload = parse_payload(event.data)
        if payload["version"] <= self.last_version:
            return None  # a reconnection's snapshot of a state already seen
        self.last_version = payload["version"]
        self.finished = payload["status"] in TERMINAL_STATUSES
        return payload


async def follow(
    session: aiohttp.ClientSession,
    progress_url: str,
    status_url: str,
    headers: Mapping[str, str],
    *,
    policy: RetryPolicy = RetryPolicy(),
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the task's payloads, each version once and in increasing order, until a terminal
    one. Reconnects with `Last-Event-ID` when the stream drops; the first connection is not
    retried (nothing is listening, or the URL is wrong: waiting would not help)."""
    position = _Position()
    failures = 0
    while True:
        position.got_event = False
        try:
            attempt = _attempt(session, progress_url, status_url, headers, position)
            async with aclosing(attempt):
                async for payload in attempt:
                    yield payload
            if position.finished:
                return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not position.connected_once:
                raise StreamUnreachable(connection_reason(exc)) from exc
            position.reason = connection_reason(exc)
        # Only attempts that brought no event count: a gateway that answers keeps us trying.
        failures = 0 if position.got_event else failures + 1
        if failures >= policy.max_failures:
            raise StreamLost(
                f"lost the stream and {failures} reconnections failed: {position.reason}"
            )
        delay = policy.delay(failures)
        if on_retry is not None:
            on_retry(failures, delay, position.reason)
        await sleep(delay)


async def _attempt(
    session: aiohttp.ClientSession,
    progress_url: str,
    status_url: str,
    headers: Mapping[str, str],
    position: _Position,
) -> AsyncGenerator[TaskPayload, None]:
    """One connection: its new payloads; `position` says how it ended."""
    async with session.get(progress_url, headers=position.request_headers(headers)) as response:
        if response.status == 204:
            # "You have the terminal state": not from this stream (it would have ended the
            # loop), so the event was lost in transit. Ask for it once.
            yield await _final_status(session, status_url, headers, position.last_version)
            position.finished = True
            return
        if response.status != 200:
            body = await error_body(response)
            if not (position.connected_once and retryable(response.status)):
                raise refused(response.status, response.reason or "", body)
            position.reason = f"{response.status} {response.reason or ''}".strip()
            return
        if response.content_type != "text/event-stream":
            raise StreamBroken(
                f"{progress_url} did not answer with an event stream (got {response.content_type})"
            )
        position.connected_once = True
        splitter, parser = LineSplitter(), SseParser(last_event_id=position.last_id)
        async for chunk in response.content.iter_any():
            for line in splitter.feed(chunk):
                payload = position.accept(parser.feed(line))
                if payload is not None:
                    yield payload
                    if position.finished:
                        return
        position.reason = "the stream ended before the task did"


async def _final_status(
    session: aiohttp.ClientSession, status_url: str, headers: Mapping[str, str], seen: int
) -> TaskPayload:
    """The gateway says the task ended at a version we hold, yet we saw no terminal state
    (a 204 to a reconnection): ask for it."""
    async with session.get(status_url, headers=headers) as response:
        if response.status != 200:
            raise refused(response.status, response.reason or "", await error_body(response))
        payload = parse_payload(await response.text())
    if payload["status"] not in TERMINAL_STATUSES or payload["version"] < seen:
        raise StreamBroken(f"the stream ended but the task is {payload['status']}")
    return payload
