"""`Client(base_url, token)`: spawn, read, cancel and follow tasks over the gateway's HTTP API.

One `aiohttp.ClientSession` per client (or the one handed in), opened on first use; close it
with `await client.close()` or `async with Client(...) as client:`. Every call that the
gateway answers 503 or 429 is tried again after the policy's backoff, never sooner than the
answer's `Retry-After`; every other error status raises its `Refused` subclass at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import urlencode
from uuid import UUID

import aiohttp

from praxiom_client.errors import PraxiomError, Unreachable, refused
from praxiom_client.payload import SpawnedTask, TaskPage, TaskPayload, TaskRecord
from praxiom_client.policy import (
    BUSY_STATUSES,
    DEFAULT_POLICY,
    OnRetry,
    RetryPolicy,
    retry_after_seconds,
)
from praxiom_client.stream import STREAM_TIMEOUT, USER_AGENT, connection_reason, follow
from praxiom_client.workspace import follow_workspace

#: One request and its answer; streams have no total (see `STREAM_TIMEOUT`).
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


class Client:
    """A gateway at `base_url` (`http://gateway:8080`), called with `token`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        on_retry: OnRetry | None = None,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.on_retry = on_retry
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": user_agent}
        self._session = session
        self._own_session = session is None
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client opened (one handed in stays open)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def spawn(
        self,
        task_type: str,
        *,
        workspace_id: str | UUID | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> SpawnedTask:
        """Start a task; its first payload (pending), with `task_id`. `workspace_id` may be
        left out by a caller who may act in exactly one workspace."""
        body: dict[str, Any] = {"task_type": task_type}
        if workspace_id is not None:
            body["workspace_id"] = str(workspace_id)
        if params is not None:
            body["params"] = dict(params)
        return cast(SpawnedTask, await self._call("POST", "/api/tasks/spawn", body))

    async def status(self, task_id: str | UUID) -> TaskPayload:
        """The task's payload now: the same as its stream's latest event."""
        return cast(TaskPayload, await self._call("GET", f"/api/tasks/{task_id}/status"))

    async def record(self, task_id: str | UUID) -> TaskRecord:
        """The task's canonical record: the payload plus its params, workspace and times."""
        return cast(TaskRecord, await self._call("GET", f"/api/tasks/{task_id}"))

    async def list_tasks(
        self,
        *,
        workspace_id: str | UUID | None = None,
        status: Sequence[str] = (),
        task_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """A page of the tasks this caller may see, newest first, each filter optional; pass
        its `next_cursor` as `cursor` for the next page (None: it was the last)."""
        query = {
            "workspace_id": str(workspace_id) if workspace_id is not None else None,
            "status": ",".join(status) or None,
            "task_type": task_type,
            "limit": str(limit) if limit is not None else None,
            "cursor": cursor,
        }
        given = urlencode({key: value for key, value in query.items() if value is not None})
        return cast(TaskPage, await self._call("GET", f"/api/tasks?{given}"))

    async def cancel(self, task_id: str | UUID) -> TaskPayload:
        """Cancel a pending or running task; its cancelled payload. A finished task raises
        `Conflict`, whose `task` is its payload."""
        return cast(TaskPayload, await self._call("POST", f"/api/tasks/{task_id}/cancel"))

    async def watch(
        self, task_id: str | UUID, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[TaskPayload, None]:
        """Yield the task's payloads, each version once and in order, until the terminal one
        (see `watch_task` for reconnections and what it raises)."""
        base = f"{self.base_url}/api/tasks/{task_id}"
        payloads = follow(
            self._open(),
            f"{base}/progress",
            f"{base}/status",
            self._headers,
            policy=self.policy,
            on_retry=on_retry or self.on_retry,
            sleep=self._sleep,
        )
        async with aclosing(payloads):  # leaving early closes the connection at once
            async for payload in payloads:
                yield payload

    async def watch_workspace(
        self, workspace_id: str | UUID, *, on_retry: OnRetry | None = None
    ) -> AsyncGenerator[TaskPayload, None]:
        """Yield every task of the workspace as it changes: first the current state of each
        (not finished, or finished recently), then every change, spawns included; per task,
        versions only go up. Never ends by itself (see `watch_workspace`)."""
        payloads = follow_workspace(
            self._open(),
            f"{self.base_url}/api/workspaces/{workspace_id}/progress",
            self._headers,
            policy=self.policy,
            on_retry=on_retry or self.on_retry,
            sleep=self._sleep,
        )
        async with aclosing(payloads):
            async for payload in payloads:
                yield payload

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=STREAM_TIMEOUT)
        return self._session

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One request, retried while the gateway is busy; its JSON object."""
        url = f"{self.base_url}{path}"
        failures = 0
        while True:
            status, reason, text, retry_after = await self._send(method, url, body)
            if status < 400:
                return _json_object(url, status, text)
            if status not in BUSY_STATUSES:
                raise refused(status, reason, text)
            failures += 1
            delay = self.policy.retry_delay(failures, retry_after_seconds(retry_after))
            if delay is None:
                raise refused(status, reason, text)
            if self.on_retry is not None:
                self.on_retry(failures, delay, f"{status} {reason}".strip())
            await self._sleep(delay)

    async def _send(self, method: str, url: str, body: Any) -> tuple[int, str, str, str | None]:
        try:
            async with self._open().request(
                method, url, json=body, headers=self._headers, timeout=REQUEST_TIMEOUT
            ) as response:
                text = await response.text(errors="replace")
                retry_after = response.headers.get("Retry-After")
                return response.status, response.reason or "", text, retry_after
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(self.base_url, connection_reason(exc)) from exc


def _json_object(url: str, status: int, text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise PraxiomError(f"{url} answered {status} without a JSON object")
    return document


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
    mid-task is a 403), `Unreachable` when the first connection fails, and
    `StreamLost` after `policy.max_failures` reconnections in a row brought nothing.
    A 503 or 429, even to the first connection, is retried the same way, never sooner
    than its `Retry-After`. Pass a `session` to share its connection pool; it should have
    no total timeout. `Client(url, token).watch(task_id)` is the same.
    """
    client = Client(url, token, session=session, policy=policy, user_agent=user_agent)
    async with client:
        async for payload in client.watch(task_id, on_retry=on_retry):
            yield payload


async def watch_workspace(
    url: str,
    workspace_id: str | UUID,
    token: str,
    *,
    session: aiohttp.ClientSession | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_retry: OnRetry | None = None,
    user_agent: str = USER_AGENT,
) -> AsyncGenerator[TaskPayload, None]:
    """Yield the workspace's task payloads until the caller stops: `watch_task`'s retries and
    refusals (`TaskNotFound`: no such workspace), resuming from the stream's last event id.
    `Client(url, token).watch_workspace(workspace_id)` is the same."""
    client = Client(url, token, session=session, policy=policy, user_agent=user_agent)
    async with client:
        async for payload in client.watch_workspace(workspace_id, on_retry=on_retry):
            yield payload
