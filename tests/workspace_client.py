"""A test client for the workspace stream: reads it in the background with the HTML spec's
event-stream rules (praxiom_client.sse: an `id:`-only block moves the last event id without
an event), and keeps what a page would: every event, the last event id, and the newest
payload per task."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import aiohttp

from praxiom_client.sse import LineSplitter, SseEvent, SseParser
from tests.conftest import bearer


class WorkspaceClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        workspace_id: UUID | str,
        token: str,
        *,
        last_event_id: str | None = None,
        in_query: bool = False,
    ) -> None:
        self.url = f"{base_url}/api/workspaces/{workspace_id}/progress"
        if last_event_id is not None and in_query:  # as a client that cannot set headers
            self.url += f"?last_event_id={last_event_id}"
            last_event_id = None
        self._session = session
        self._headers = bearer(token)
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self.status = 0
        self.headers: dict[str, str] = {}
        self.raw = b""  # every byte of the body, as sent
        self.events: list[SseEvent] = []
        self.parser = SseParser()
        self.ended = asyncio.Event()
        self.body: dict[str, Any] | None = None  # the error body of a refusal
        self.error: Exception | None = None  # why reading ended, when not cleanly
        self._reader: asyncio.Task[None] | None = None
        self._answered = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever bytes arrive or the stream ends

    async def __aenter__(self) -> WorkspaceClient:
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._answered.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async with self._session.get(self.url, headers=self._headers) as response:
                self.status = response.status
                self.headers = dict(response.headers)
                if response.status != 200:
                    if response.content_type == "application/json":
                        self.body = await response.json()
                    self._answered.set()
                    return
                self._answered.set()
                lines = LineSplitter()
                async for chunk in response.content.iter_any():
                    self.raw += chunk
                    for line in lines.feed(chunk):
                        event = self.parser.feed(line)
                        if event is not None:
                            self.events.append(event)
                    self._progress.set()
        except (TimeoutError, aiohttp.ClientError):
            pass
        finally:
            self._answered.set()
            self.ended.set()
            self._progress.set()

    @property
    def last_event_id(self) -> str | None:
        return self.parser.last_event_id

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(event.data) for event in self.events]

    def newest(self) -> dict[str, dict[str, Any]]:
        """The highest version seen per task, as a page keeps it."""
        kept: dict[str, dict[str, Any]] = {}
        for payload in self.payloads:
            held = kept.get(payload["id"])
            if held is None or payload["version"] > held["version"]:
                kept[payload["id"]] = payload
        return kept

    async def wait_for(self, check: Any, timeout_s: float = 10.0) -> None:
        """Until `check(self)` is true (fails the test after `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            while not check(self):
                self._progress.clear()
                await self._progress.wait()
