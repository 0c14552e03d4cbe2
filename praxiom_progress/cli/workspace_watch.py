"""`watch --workspace W`: every task of a workspace, live, until Ctrl-C.

The tasks still going come from the list (`GET /api/tasks?status=pending,running`, for their
order, newest first); every change after that, spawns included, from the workspace's stream
(`praxiom_client.watch_workspace`). On a terminal a table is redrawn in place (finished tasks
stay `--finished-for` seconds); elsewhere each change is one plain line, or one JSON object
with `--json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

from praxiom_client import TERMINAL_STATUSES, Client, TaskPayload, TaskRecord
from praxiom_progress.cli.watch import one_line, plain_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

#: How often the table is redrawn at most (and finished rows dropped once their time is up).
REDRAW_INTERVAL_S = 0.25
#: The list's largest page, and how many pages of running tasks are read at start.
LIST_PAGE = 200
MAX_LIST_PAGES = 10
#: A list record is the payload plus the row's own fields; the table keeps the payload's.
_PAYLOAD_KEYS = tuple(TaskPayload.__annotations__)


@dataclass
class _Row:
    payload: TaskPayload
    order: float  # newest first: created_at when the list gave it, else when first seen
    finished_at: float | None = None  # the clock's time it was seen finished


class WorkspaceTasks:
    """What the table shows: each task's newest state, newest first; a finished task leaves
    `finished_for_s` after it was seen finished."""

    def __init__(self, finished_for_s: float, clock: Callable[[], float] = time.monotonic):
        self.finished_for_s = finished_for_s
        self._clock = clock
        self._rows: dict[str, _Row] = {}

    def update(self, payload: TaskPayload, created_at: str | None = None) -> bool:
        """Take a state; False when it is not newer than the one held (nothing to show)."""
        row = self._rows.get(payload["id"])
        if row is not None and row.payload["version"] >= payload["version"]:
            return False
        order = _timestamp(created_at) if created_at else time.time()
        if row is None:
            row = self._rows[payload["id"]] = _Row(payload, order)
        row.payload = payload
        if created_at:
            row.order = order
        if payload["status"] in TERMINAL_STATUSES and row.finished_at is None:
            row.finished_at = self._clock()
        return True

    def rows(self) -> list[TaskPayload]:
        """The tasks to show now, newest first (dropping those finished long enough ago)."""
        now = self._clock()
        for task_id, row in list(self._rows.items()):
            if row.finished_at is not None and now - row.finished_at >= self.finished_for_s:
                del self._rows[task_id]
        ordered = sorted(self._rows.values(), key=lambda r: r.order, reverse=True)
        return [row.payload for row in ordered]


def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


# -- rendering --------------------------------------------------------------------------------


class WorkspaceRenderer(Protocol):
    def show(self, tasks: WorkspaceTasks, changed: TaskPayload | None) -> None:
        """Show the tasks; `changed` is the state just taken (None: only time passed)."""

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        """The stream dropped; the next attempt is in `delay_s` seconds."""

    def close(self) -> None:
        """Leave the last state on screen."""


class LineRenderer:
    """One plain line per change: `<id>  <type>  <status>  <pct>%  <phase>  <message>`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._shown: dict[str, str] = {}

    def show(self, tasks: WorkspaceTasks, changed: TaskPayload | None) -> None:
        if changed is None:
            return
        line = plain_line(changed)
        if self._shown.get(changed["id"]) == line:
            return  # only the heartbeat moved
        self._shown[changed["id"]] = line
        task = f"{one_line(changed['id'])[:8]}  {one_line(changed['task_type'])}"
        print(f"{task}  {line}", file=self.out, flush=True)

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        pass  # stdout carries the tasks' states only; a final failure is reported on stderr

    def close(self) -> None:
        pass


class JsonLinesRenderer:
    """Every new state as one line of JSON (`watch --workspace W --json | jq`)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, tasks: WorkspaceTasks, changed: TaskPayload | None) -> None:
        if changed is not None:
            print(json.dumps(changed, ensure_ascii=False), file=self.out, flush=True)

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        pass

    def close(self) -> None:
        pass


_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
}


def workspace_table(workspace_id: str, rows: list[TaskPayload], note: str = "") -> Table:
    """The table as drawn: one row per task, newest first; `note` says why it may be stale."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"workspace {workspace_id}",
        caption=note or f"{len(rows)} task{'s' if len(rows) != 1 else ''} · Ctrl-C to stop",
        expand=True,
    )
    table.add_column("task", style="dim", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", width=22, no_wrap=True)
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("phase", style="cyan", no_wrap=True)
    table.add_column("message", overflow="ellipsis", no_wrap=True, ratio=1)
    for payload in rows:
        status = one_line(payload["status"])
        pct = payload["progress_pct"] if isinstance(payload["progress_pct"], int) else 0
        message = (
            payload["error"] if status == "failed" and payload["error"] else payload["message"]
        )
        table.add_row(
            one_line(payload["id"])[:8],
            Text(one_line(payload["task_type"])),
            Text(status, style=_STYLES.get(status, "bold")),
            ProgressBar(total=100, completed=pct, width=20),
            f"{pct}%",
            Text(one_line(payload["phase"])),
            Text(one_line(str(message))),
        )
    return table


class TableRenderer:
    """The table, redrawn in place (rich's Live, refreshed by hand: no thread of its own)."""

    def __init__(self, console: Console, workspace_id: str) -> None:
        from rich.live import Live

        self.workspace_id = workspace_id
        self._live: Live = Live(console=console, auto_refresh=False, transient=False)
        self._started = False
        self._note = ""  # while the stream is down: why, and when it is tried again

    def show(self, tasks: WorkspaceTasks, changed: TaskPayload | None) -> None:
        if changed is not None:
            self._note = ""
        if not self._started:
            self._started = True
            self._live.start()
        table = workspace_table(self.workspace_id, tasks.rows(), self._note)
        self._live.update(table, refresh=True)

    def reconnecting(self, failures: int, delay_s: float, reason: str) -> None:
        self._note = f"reconnecting: {one_line(reason)}; retrying in {delay_s:.1f}s"

    def close(self) -> None:
        if self._started:
            self._started = False
            self._live.stop()


def make_workspace_renderer(out: TextIO, workspace_id: str, *, as_json: bool) -> WorkspaceRenderer:
    """The table on a terminal, plain lines elsewhere (a pipe, a file), JSON if asked."""
    if as_json:
        return JsonLinesRenderer(out)
    if out.isatty():
        from rich.console import Console

        return TableRenderer(Console(file=out), workspace_id)
    return LineRenderer(out)


# -- following --------------------------------------------------------------------------------


async def follow_workspace(
    listed: Sequence[Mapping[str, Any]],
    payloads: AsyncGenerator[TaskPayload, None],
    tasks: WorkspaceTasks,
    renderer: WorkspaceRenderer,
) -> None:
    """Show the listed tasks, then every payload of the stream, and redraw every
    `REDRAW_INTERVAL_S` besides (finished rows leave on time); runs until cancelled (Ctrl-C)
    or the stream fails. The renderer is closed either way."""
    ticker = asyncio.create_task(_redraw(tasks, renderer), name="workspace-redraw")
    try:
        for record in listed:
            payload = cast(TaskPayload, {key: record[key] for key in _PAYLOAD_KEYS})
            if tasks.update(payload, record.get("created_at")):
                renderer.show(tasks, payload)
        renderer.show(tasks, None)
        async with contextlib.aclosing(payloads):
            async for payload in payloads:
                if tasks.update(payload):
                    renderer.show(tasks, payload)
    finally:
        ticker.cancel()
        renderer.close()


async def _redraw(tasks: WorkspaceTasks, renderer: WorkspaceRenderer) -> None:
    while True:
        await asyncio.sleep(REDRAW_INTERVAL_S)
        renderer.show(tasks, None)


async def until_interrupted(work: asyncio.Task[None]) -> bool:
    """Run `work` until Ctrl-C (SIGINT) or SIGTERM: True when interrupted, False when `work`
    ended first (its exception, if any, is raised)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        stopping.cancel()
    if work.done():
        work.result()
        return False
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return True


async def running_tasks(client: Client, workspace_id: str) -> list[TaskRecord]:
    """The workspace's tasks still going, newest first (`GET /api/tasks`, page by page)."""
    tasks: list[TaskRecord] = []
    cursor = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tasks(
            workspace_id=workspace_id, status=("pending", "running"), limit=LIST_PAGE, cursor=cursor
        )
        tasks.extend(page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return tasks


async def run(
    url: str,
    token: str,
    workspace_id: str,
    *,
    out: TextIO,
    as_json: bool,
    finished_for_s: float,
    user_agent: str,
) -> None:
    """List, then follow, until Ctrl-C; the client's errors when the gateway refuses (401,
    403, 404: no such workspace), cannot be reached, or the stream is lost."""
    async with Client(url, token, user_agent=user_agent) as client:
        listed = await running_tasks(client, workspace_id)
        renderer = make_workspace_renderer(out, workspace_id, as_json=as_json)
        tasks = WorkspaceTasks(finished_for_s)
        payloads = client.watch_workspace(workspace_id, on_retry=renderer.reconnecting)
        work = asyncio.create_task(follow_workspace(listed, payloads, tasks, renderer))
        await until_interrupted(work)
