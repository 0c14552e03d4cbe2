"""Following a task's progress stream: the SSE wire format, reconnection, and rendering.

Three parts that know nothing of each other: `SseParser` turns lines into
events; `follow` turns a `GET /api/tasks/{id}/progress` into the task's
payloads, newest version only, reconnecting with `Last-Event-ID` when the
connection drops; a `Renderer` shows each payload (a live bar on a terminal,
one plain line per change otherwise, or one JSON object per line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import aiohttp

TERMINAL_EXIT_CODES: Mapping[str, int] = {"completed": 0, "failed": 1, "cancelled": 3}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_MAX_LINE_BYTES = 16 * 1024 * 1024  # far beyond any payload; a stream without newlines is junk
_MAX_ERROR_BODY = 64 * 1024


def exit_code_for(status: str) -> int | None:
    """The exit code `watch` ends with for a terminal status; None while the task goes on."""
    return TERMINAL_EXIT_CODES.get(status)


def one_line(text: str) -> str:
    """Text fit for one line of a terminal: control characters (newlines too) become spaces."""
    return _CONTROL.sub(" ", text).strip()


# -- the wire format --------------------------------------------------------------------------


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


# -- following the stream ---------------------------------------------------------------------


class StreamError(Exception):
    """Following the stream failed; the message is one line, fit for `error: <message>`."""


class StreamRefused(StreamError):
    """The gateway answered with an error status that retrying will not change (401, 404...)."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class StreamUnreachable(StreamError):
    """The first connection failed: there is nothing to reconnect to."""


class StreamLost(StreamError):
    """The stream dropped and every reconnection since has failed."""


class StreamBroken(StreamError):
    """The server sent something that is not a task's progress stream."""


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
    return one_line(str(exc)) or type(exc).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between reconnections: `first_delay_s`, doubling, capped; give up after
    `max_failures` consecutive attempts that brought nothing."""

    first_delay_s: float = 0.5
    max_delay_s: float = 5.0
    max_failures: int = 10

    def delay(self, failures: int) -> float:
        """The wait before the next attempt, after `failures` failed attempts in a row."""
        return min(self.first_delay_s * 2 ** min(failures, 32), self.max_delay_s)


OnRetry = Callable[[int, float, str], None]  # (failures so far, delay, reason)


def _payload(data: str) -> dict[str, Any]:
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
    return payload


async def _error_body(response: aiohttp.ClientResponse) -> str:
    raw = await response.content.read(_MAX_ERROR_BODY)
    return raw.decode("utf-8", errors="replace")


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


async def follow(
    session: aiohttp.ClientSession,
    progress_url: str,
    status_url: str,
    headers: Mapping[str, str],
    *,
    policy: RetryPolicy = RetryPolicy(),
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the task's payloads, each version once and in increasing order, until a terminal
    one. Reconnects with `Last-Event-ID` when the stream drops; the first connection is not
    retried (nothing is listening, or the URL is wrong: waiting would not help)."""
    last_version = 0
    last_id: str | None = None
    connected_once = False
    failures = 0
    while True:
        request_headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_id is not None or last_version:
            request_headers["Last-Event-ID"] = last_id or str(last_version)
        got_event = False
        try:
            async with session.get(progress_url, headers=request_headers) as response:
                if response.status == 204:
                    # "You have the terminal state": not from this stream (it would have ended
                    # the loop), so the event was lost in transit. Ask for it once.
                    yield await _final_status(session, status_url, headers, last_version)
                    return
                if response.status != 200:
                    body = await _error_body(response)
                    if not (connected_once and _retryable(response.status)):
                        raise StreamRefused(response.status, response.reason or "", body)
                    reason = f"{response.status} {response.reason or ''}".strip()
                else:
                    if response.content_type != "text/event-stream":
                        raise StreamBroken(
                            f"{progress_url} did not answer with an event stream "
                            f"(got {response.content_type})"
                        )
                    connected_once = True
                    splitter, parser = LineSplitter(), SseParser(last_event_id=last_id)
                    async for chunk in response.content.iter_any():
                        for line in splitter.feed(chunk):
                            event = parser.feed(line)
                            if event is None or event.event != "message":
                                continue
                            got_event = True
                            last_id = event.id
                            payload = _payload(event.data)
                            if payload["version"] <= last_version:
                                continue  # a reconnection's snapshot of a state already seen
                            last_version = payload["version"]
                            yield payload
                            if exit_code_for(payload["status"]) is not None:
                                return
                    reason = "the stream ended before the task did"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not connected_once:
                raise StreamUnreachable(connection_reason(exc)) from exc
            reason = connection_reason(exc)
        # Only attempts that brought no event count: a gateway that answers keeps us trying.
        failures = 0 if got_event else failures + 1
        if failures >= policy.max_failures:
            raise StreamLost(f"lost the stream and {failures} reconnections failed: {reason}")
        delay = policy.delay(failures)
        if on_retry is not None:
            on_retry(failures, delay, reason)
        await sleep(delay)


async def _final_status(
    session: aiohttp.ClientSession, status_url: str, headers: Mapping[str, str], seen: int
) -> dict[str, Any]:
    """The gateway says the task ended at a version we hold, yet we saw no terminal state
    (a 204 to a reconnection): ask for it."""
    async with session.get(status_url, headers=headers) as response:
        if response.status != 200:
            raise StreamRefused(response.status, response.reason or "", await _error_body(response))
        payload = _payload(await response.text())
    if exit_code_for(payload["status"]) is None or payload["version"] < seen:
        raise StreamBroken(f"the stream ended but the task is {payload['status']}")
    return payload


# -- rendering --------------------------------------------------------------------------------


class Renderer(Protocol):
    def update(self, payload: Mapping[str, Any]) -> None:
        """Show one payload."""

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        """The stream dropped; the next attempt is in `delay_s` seconds."""

    def close(self) -> None:
        """Leave the final state on screen; called once, however the watch ended."""


def _fields(payload: Mapping[str, Any]) -> tuple[str, int, str, str]:
    pct = payload.get("progress_pct")
    return (
        one_line(str(payload.get("status", ""))),
        pct if isinstance(pct, int) and not isinstance(pct, bool) else 0,
        one_line(str(payload.get("phase", ""))),
        one_line(str(payload.get("message", ""))),
    )


def plain_line(payload: Mapping[str, Any]) -> str:
    """`running  50%  research_plan  Building your research plan...`"""
    status, pct, phase, message = _fields(payload)
    return "  ".join(part for part in (status, f"{pct}%", phase, message) if part)


class PlainRenderer:
    """One line per change of what is shown; a new version that only moved the heartbeat (the
    same status, percentage, phase and message) prints nothing."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last: str | None = None

    def update(self, payload: Mapping[str, Any]) -> None:
        line = plain_line(payload)
        if line != self._last:
            self._last = line
            print(line, file=self.out, flush=True)

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        pass  # stdout carries the task's states only; a final failure is reported on stderr

    def close(self) -> None:
        pass


class JsonRenderer:
    """Every payload as one line of JSON, for scripts (`watch --json | jq`)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def update(self, payload: Mapping[str, Any]) -> None:
        print(json.dumps(payload, ensure_ascii=False), file=self.out, flush=True)

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        pass

    def close(self) -> None:
        pass


_STATUS_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
    "reconnecting": "yellow",
}


class RichRenderer:
    """A live bar: status, bar, percentage, phase and message, redrawn on each event."""

    def __init__(self, console: Any, title: str = "") -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
        from rich.table import Column

        self._progress = Progress(
            TextColumn("{task.description}", markup=False, style="dim"),
            TextColumn("{task.fields[status]}"),  # markup: built by _status, server text escaped
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[phase]}", markup=False, style="cyan"),
            TextColumn(
                "{task.fields[message]}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis"),
            ),
            console=console,
            auto_refresh=False,  # redrawn on each event: nothing moves in between
        )
        self._task = self._progress.add_task(title, total=100, status="", phase="", message="")
        self._started = self._closed = False

    def _draw(self) -> None:
        # Started on the first event, so a refusal (404, 401) leaves no empty bar behind it.
        if not self._started:
            self._started = True
            self._progress.start()
        self._progress.refresh()

    def update(self, payload: Mapping[str, Any]) -> None:
        status, pct, phase, message = _fields(payload)
        self._progress.update(
            self._task, completed=pct, status=_status(status), phase=phase, message=message
        )
        self._draw()

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        self._progress.update(
            self._task,
            status=_status("reconnecting"),
            message=f"{one_line(reason)}; retrying in {delay_s:g}s",
        )
        self._draw()

    def close(self) -> None:
        if self._started and not self._closed:
            self._closed = True
            self._progress.stop()


def _status(status: str) -> str:
    from rich.markup import escape

    return f"[{_STATUS_STYLES.get(status, 'bold')}]{escape(status)}[/]"


def make_renderer(out: TextIO, *, as_json: bool = False, title: str = "") -> Renderer:
    """The live bar on a terminal, plain lines elsewhere (a pipe, a file), JSON if asked."""
    if as_json:
        return JsonRenderer(out)
    if out.isatty():
        from rich.console import Console

        return RichRenderer(Console(file=out), title)
    return PlainRenderer(out)


async def render(
    payloads: AsyncGenerator[dict[str, Any], None], renderer: Renderer
) -> dict[str, Any]:
    """Show every payload; returns the last (terminal) one. Closes the renderer either way."""
    last: dict[str, Any] | None = None
    try:
        async with contextlib.aclosing(payloads):
            async for payload in payloads:
                last = payload
                renderer.update(payload)
    finally:
        renderer.close()
    if last is None:  # follow() always yields a terminal payload before it returns
        raise StreamBroken("the stream ended without a task state")
    return last
