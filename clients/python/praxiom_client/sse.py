"""The `text/event-stream` wire format: bytes to lines, lines to events (the HTML spec's rules:
multi-line `data:`, `id:`, `event:`, `retry:`, comments, a leading BOM)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from praxiom_client.errors import StreamBroken

_MAX_LINE_BYTES = 16 * 1024 * 1024  # far beyond any payload; a stream without newlines is junk


class LineSplitter:
    """Bytes in, complete lines out; a line ends at CRLF, LF or CR, as the SSE spec says."""

    def __init__(self) -> None:
        self._buffer = b""
        self._after_cr = False  # the last chunk ended with CR: a following LF belongs to it

    def feed(self, chunk: bytes) -> list[str]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        parts = re.split(rb"\r\n|\r|\n", self._buffer + chunk)
        self._buffer = parts.pop()
        if len(self._buffer) > _MAX_LINE_BYTES:
            raise StreamBroken("the server sent a line longer than 16 MiB")
        # CR and LF never occur inside a multi-byte UTF-8 sequence, so each line decodes alone.
        return [part.decode("utf-8", errors="replace") for part in parts]


@dataclass
class SseEvent:
    data: str
    id: str | None = None  # the last event id in force when this event was dispatched
    event: str = "message"


@dataclass
class SseParser:
    """The event-stream interpretation rules of the HTML spec, one line at a time."""

    last_event_id: str | None = None
    retry_ms: int | None = None
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _first_line: bool = True

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its ending); returns an event when a blank line ends one."""
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the gateway's keep-alive ping
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "event":
            self._event = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent("\n".join(data), self.last_event_id, event)
