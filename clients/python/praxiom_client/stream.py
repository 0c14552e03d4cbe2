"""Following a task's progress stream: `follow`, under `Client.watch` and `watch_task`.

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
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import NoReturn, Protocol, cast

import aiohttp

from praxiom_client.errors import Refused, StreamBroken, StreamLost, Unreachable, refused
from praxiom_client.payload import TaskPayload
from praxiom_client.policy import (
    BUSY_STATUSES,
    OnRetry,
    RetryPolicy,
    retry_after_seconds,
)
from praxiom_client.sse import LineSplitter, SseEvent, SseParser

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
#: No total: a task may run for hours. Each read is bounded instead, well above the gateway's
#: 15 s keep-alive comments, so a silently dead connection is noticed and reconnected.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
USER_AGENT = "praxiom-client"
_PLAIN_POLICY = RetryPolicy()  # `follow`'s default: the backoff without jitter
_MAX_ERROR_BODY = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


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


def _payload(data: str) -> TaskPayload:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("status"), str)
        or not isinstance(payload.get("version"), int)
        or isinstance(payload.get("version"), bool)
    ):
        raise StreamBroken(f"the server sent an event that is not a task payload: {data!r:.80}")
    return cast(TaskPayload, payload)


async def _error_body(response: aiohttp.ClientResponse) -> str:
    raw = await response.content.read(_MAX_ERROR_BODY)
    return raw.decode("utf-8", errors="replace")


def _retryable(status: int) -> bool:
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
    retry_after_s: float | None = None  # what the last busy answer asked for
    refusal: Refused | None = None  # the last busy answer, raised if it outlasts the retries

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
        payload = _payload(event.data)
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
    policy: RetryPolicy = _PLAIN_POLICY,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the task's payloads, each version once and in increasing order, until a terminal
    one. Reconnects with `Last-Event-ID` when the stream drops. A first connection that
    fails is not retried (nothing is listening, or the URL is wrong: waiting would not
    help); one answered 503 or 429 is, like a reconnection."""
    position = _Position()
    attempts = reconnecting(
        lambda: _attempt(session, progress_url, status_url, headers, position),
        position,
        progress_url,
        policy=policy,
        on_retry=on_retry,
        sleep=sleep,
        done=lambda: position.finished,
    )
    async with aclosing(attempts):
        async for payload in attempts:
            yield payload


async def reconnecting(
    attempt: Callable[[], AsyncGenerator[TaskPayload, None]],
    position: _Attempted,
    url: str,
    *,
    policy: RetryPolicy,
    on_retry: OnRetry | None,
    sleep: Callable[[float], Awaitable[None]],
    done: Callable[[], bool] = lambda: False,
) -> AsyncGenerator[TaskPayload, None]:
    """Every follower's loop (a task's or a workspace's): one connection's payloads after
    another, until `done`, with `policy`'s delays between connections that brought nothing."""
    failures = 0
    while True:
        position.got_event, position.retry_after_s = False, None
        try:
            connection = attempt()
            async with aclosing(connection):
                async for payload in connection:
                    yield payload
            if done():
                return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not position.connected_once:
                raise Unreachable(url, connection_reason(exc)) from exc
            position.reason = connection_reason(exc)
        # Only attempts that brought no event count: a gateway that answers keeps us trying.
        failures = 0 if position.got_event else failures + 1
        delay = policy.retry_delay(failures, position.retry_after_s)
        if delay is None:
            _give_up(position, failures)
        if on_retry is not None:
            on_retry(failures, delay, position.reason)
        await sleep(delay)


class _Attempted(Protocol):
    """What a follower's connections (a task's or a workspace's) leave behind."""

    connected_once: bool
    got_event: bool
    reason: str
    retry_after_s: float | None
    refusal: Refused | None


async def _opened(response: aiohttp.ClientResponse, position: _Attempted, url: str) -> bool:
    """True for the event stream; False for a refusal worth retrying (noted in `position`);
    any other refusal, or a 200 that is no stream, is raised."""
    if response.status != 200:
        refusal = refused(response.status, response.reason or "", await _error_body(response))
        busy = response.status in BUSY_STATUSES
        if not (busy or (position.connected_once and _retryable(response.status))):
            raise refusal
        position.reason = f"{response.status} {response.reason or ''}".strip()
        position.refusal = refusal
        if busy:
            position.retry_after_s = retry_after_seconds(response.headers.get("Retry-After"))
        return False
    if response.content_type != "text/event-stream":
        raise StreamBroken(
            f"{url} did not answer with an event stream (got {response.content_type})"
        )
    position.connected_once = True
    return True


def _give_up(position: _Attempted, failures: int) -> NoReturn:
    if position.refusal is not None and not position.connected_once:
        raise position.refusal  # never connected: the gateway's own words say most
    raise StreamLost(f"lost the stream and {failures} reconnections failed: {position.reason}")


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
        if not await _opened(response, position, progress_url):
            return
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
            raise refused(response.status, response.reason or "", await _error_body(response))
        payload = _payload(await response.text())
    if payload["status"] not in TERMINAL_STATUSES or payload["version"] < seen:
        raise StreamBroken(f"the stream ended but the task is {payload['status']}")
    return payload
