"""`praxiom-progress watch --workspace W` as a real subprocess against a live gateway: the tasks
already going, a spawn after it started, every change to the end, until Ctrl-C (exit 0); its
refusals as one line. stdout is a pipe, so it prints plain lines."""

from __future__ import annotations

import asyncio
import signal
from uuid import UUID

from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import RunnerHarness, builtin_registry, spawn, wait_for_status
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
