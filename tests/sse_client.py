"""A small SSE client for tests: parses the wire format, so tests see what a browser sees."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Event:
    data: str
    id: str | None = None
    event: str | None = None
    retry: int | None = None
    fields: list[str] = field(default_factory=list)  # every field name seen, in order

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.data)


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Yield each event until the server ends the stream; comments (pings) are skipped."""
    data: list[str] = []
    current = Event(data="")
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                current.data = "\n".join(data)
                yield current
            data, current = [], Event(data="")
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current.fields.append(name)
        if name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "retry":
            current.retry = int(value)


def stream_timeout(read_s: float = 30.0) -> aiohttp.ClientTimeout:
    """aiohttp's default total=300 would cut long streams; bound each read instead."""
    return aiohttp.ClientTimeout(total=None, sock_read=read_s)
