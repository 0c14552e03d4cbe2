"""`watch`: rendering a task's payloads as they arrive.

Following the stream (the SSE wire format, reconnection with `Last-Event-ID`)
is the subscriber client's job, `praxiom_client`, which internal services use
too. A `Renderer` shows each
payload (a live bar on a terminal, one plain line per change otherwise, or one
JSON object per line).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Protocol, TextIO

from praxiom_client import StreamBroken, TaskPayload

if TYPE_CHECKING:
    from rich.console import Console

TERMINAL_EXIT_CODES: Mapping[str, int] = {"completed": 0, "failed": 1, "cancelled": 3}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def exit_code_for(status: str) -> int | None:
    """The exit code `watch` ends with for a terminal status; None while the task goes on."""
    return TERMINAL_EXIT_CODES.get(status)


def one_line(text: str) -> str:
    """Text fit for one line of a terminal: control characters (newlines too) become spaces."""
    return _CONTROL.sub(" ", text).strip()


# -- rendering --------------------------------------------------------------------------------


class Renderer(Protocol):
    def update(self, payload: TaskPayload) -> None:
        """Show one payload."""

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        """The stream dropped; the next attempt is in `delay_s` seconds."""

    def close(self) -> None:
        """Leave the final state on screen; called once, however the watch ended."""


def _fields(payload: TaskPayload) -> tuple[str, int, str, str]:
    pct = payload.get("progress_pct")
    return (
        one_line(str(payload.get("status", ""))),
        pct if isinstance(pct, int) and not isinstance(pct, bool) else 0,
        one_line(str(payload.get("phase", ""))),
        one_line(str(payload.get("message", ""))),
    )


def plain_line(payload: TaskPayload) -> str:
    """`running  50%  research_plan  Building your research plan...`"""
    status, pct, phase, message = _fields(payload)
    return "  ".join(part for part in (status, f"{pct}%", phase, message) if part)


class PlainRenderer:
    """One line per change of what is shown; a new version that only moved the heartbeat (the
    same status, percentage, phase and message) prints nothing."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last: str | None = None

    def update(self, payload: TaskPayload) -> None:
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

    def update(self, payload: TaskPayload) -> None:
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

    def __init__(self, console: Console, title: str = "") -> None:
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

    def update(self, payload: TaskPayload) -> None:
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


async def render(payloads: AsyncGenerator[TaskPayload, None], renderer: Renderer) -> TaskPayload:
    """Show every payload; returns the last (terminal) one. Closes the renderer either way."""
    last: TaskPayload | None = None
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
