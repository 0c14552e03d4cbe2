"""An update as a stream sends it: the SSE event, and the same event as one HTTP/1.1 chunk.

One message fans out to every stream of its task, so its bytes are built once per update,
not once per stream: `frame` for `StreamResponse.write`, `chunk` for writing straight to a
socket (gateway.direct_write says when that is allowed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import payload_bytes, task_payload

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)  # not frozen: a frozen init costs 1.5 us more, once per message
class Update:
    """Never changed once made: one object is shared by every stream of its task."""

    version: int
    frame: bytes  # the whole SSE event, encoded once however many streams send it
    terminal: bool
    received: float = 0.0  # monotonic arrival time of a lag-sampled message; 0.0 otherwise
    chunk: bytes = b""  # `frame` as one HTTP/1.1 chunk, for writing straight to a socket
    # A workspace stream's needs (gateway.workspace): whose update it is, and the event's
    # `data:` lines alone, which it sends under an `id:` of its own.
    task_id: str = ""
    lines: bytes = b""

    @classmethod
    def of(
        cls,
        version: int,
        data: bytes,
        terminal: bool,
        retry_ms: int | None = None,
        received: float = 0.0,
        task_id: str = "",
    ) -> Update:
        """The event for one payload (as published: compact JSON, so one `data:` line)."""
        if b"\n" in data or b"\r" in data:  # a JSON payload has none, unless spaced out
            lines = b"".join(b"data: %s\r\n" % line for line in _LINE_BREAK.split(data))
        else:
            lines = b"data: " + data + b"\r\n"
        retry = b"retry: %d\r\n" % retry_ms if retry_ms is not None else b""
        frame = b"id: %d\r\n%s%s\r\n" % (version, lines, retry)
        chunk = b"%x\r\n%s\r\n" % (len(frame), frame)
        return cls(version, frame, terminal, received, chunk, task_id, lines)


def snapshot(task: Task, retry_ms: int | None = None) -> Update:
    """The event for a task read from PostgreSQL."""
    data = payload_bytes(task_payload(task))
    return Update.of(task.version, data, task.is_terminal, retry_ms, task_id=str(task.id))


def decode_message(data: bytes) -> Any:
    """A published payload's JSON, by orjson (a third of json's time: the dispatcher decodes
    every message it fans out). What orjson refuses and json takes (the escape of a lone
    surrogate) is json's to decide, so what is accepted is what always was."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode())
