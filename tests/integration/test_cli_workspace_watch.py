"""`praxiom-progress watch --workspace W` as a real subprocess against a live gateway: the tasks
already going, a spawn after it started, every change to the end, until Ctrl-C (exit 0); its
refusals as one line. stdout is a pipe, so it prints plain lines."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
from uuid import UUID

from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import REPO, RunnerHarness, builtin_registry, spawn, wait_for_status
from tests.integration.test_cli_client import Cli, cli, finish, read_line  # noqa: F401


async def _lines_until(process: asyncio.subprocess.Process, done: set[str]) -> list[str]:
    """Read plain lines until each task in `done` (short ids) has printed `completed`."""
    lines: list[str] = []
    finished: set[str] = set()
    while finished != done:
        line = await read_line(process, timeout_s=20)
        lines.append(line)
        short, _, rest = line.partition("  ")
        if rest.split("  ")[1:2] == ["completed"]:
            finished.add(short)
    return lines


async def test_watch_workspace_lists_what_runs_then_follows_every_change_until_ctrl_c(
    cli: Cli,  # noqa: F811 (the fixture imported above)
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
) -> None:
    workspace = str(member.workspace_id)
    before = await spawn(task_store, member.workspace_id, "research", step_seconds=0.2)
    process = await cli.start("watch", "--workspace", workspace)
    first = await read_line(process)
    assert first == f"{str(before)[:8]}  research  pending  0%  pending  Queued"

    later = await spawn(task_store, member.workspace_id, "synthesis", step_seconds=0.2)
    runners.start(builtin_registry())
    lines = await _lines_until(process, {str(before)[:8], str(later)[:8]})
    for task_id, task_type in ((before, "research"), (later, "synthesis")):
        own = [line for line in lines if line.startswith(str(task_id)[:8])]
        assert all(f"  {task_type}  " in line for line in own)
        pcts = [int(line.split("  ")[3].rstrip("%")) for line in own]
        assert pcts == sorted(pcts) and pcts[-1] == 100, own
        assert len(own) >= 3, own  # live: each step, not only the end
        await wait_for_status(task_store, task_id, {"completed"})

    # Still watching after everything finished: Ctrl-C ends it, exit 0, nothing on stderr.
    await asyncio.sleep(0.3)
    assert process.returncode is None
    process.send_signal(signal.SIGINT)
    result = await finish(process)
    assert result.code == 0, result.err
    assert result.err == ""


async def test_watch_workspace_refusals_are_one_line(
    cli: Cli,  # noqa: F811 (the fixture imported above)
    db: Database,
) -> None:
    other = await AccountStore(db).create_token(workspace="globex", user="bob")
    forbidden = await cli("watch", "--workspace", str(other.workspace_id))
    assert forbidden.code == 1
    assert forbidden.error_line().startswith("error: 403 FORBIDDEN: ")

    unknown = await cli("watch", "--workspace", str(UUID(int=1)), env={"PRAXIOM_TOKEN": "pxp_no"})
    assert unknown.code == 1
    assert unknown.error_line().startswith("error: 401 UNAUTHENTICATED: ")

    unreachable = await cli("watch", "--workspace", str(UUID(int=1)), "--url", "http://127.0.0.1:9")
    assert unreachable.code == 1
    assert unreachable.error_line().startswith("error: cannot reach http://127.0.0.1:9: ")


ONE, TWO = "1 task · Ctrl-C to stop", "2 tasks · Ctrl-C to stop"


def _last_frame(seen: bytes, title: str, caption: str) -> str:
    """The last whole table drawn: from its title to its caption."""
    shown = seen.decode(errors="replace")
    end = shown.rindex(caption)
    return shown[shown.rindex(title, 0, end) : end]


async def _read_until(master: int, seen: bytes, wanted: list[str], timeout_s: float = 20) -> bytes:
    """All the terminal got (`seen` and more), once `wanted` is in what came after `seen`."""
    start = len(seen)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not all(w.encode() in seen[start:] for w in wanted):
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"not on the terminal within {timeout_s}s: {wanted}\n{seen!r}"
        ready, _, _ = await asyncio.to_thread(select.select, [master], [], [], remaining)
        if ready:
            seen += os.read(master, 65536)
    return seen


async def test_on_a_terminal_it_draws_a_live_table(
    cli: Cli,  # noqa: F811 (the fixture imported above)
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    task_id = str(await spawn(task_store, member.workspace_id, "research"))
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "praxiom_progress.cli.main",
            "watch",
            "--workspace",
            str(member.workspace_id),
            cwd=REPO,
            env={**cli.env, "TERM": "xterm-256color", "COLUMNS": "140"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=terminal,
            stderr=asyncio.subprocess.PIPE,
        )
        cli.started.append(process)
        os.close(terminal)
        title = f"workspace {member.workspace_id}"
        seen = await _read_until(master, b"", [title, task_id[:8], ONE])
        frame = _last_frame(seen, title, ONE)
        assert task_id[:8] in frame and "pending" in frame and "Queued" in frame

        # A spawn afterwards appears in the table, above the first.
        later = str(await spawn(task_store, member.workspace_id, "synthesis"))
        seen = await _read_until(master, seen, [later[:8], TWO])
        frame = _last_frame(seen, title, TWO)
        assert frame.index(later[:8]) < frame.index(task_id[:8])

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert process.stderr is not None and await process.stderr.read() == b""
    finally:
        os.close(master)
