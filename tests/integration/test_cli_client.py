"""`praxiom-progress spawn|status|cancel|watch` as real subprocesses against a live gateway.

The gateway and the runners run in this test's event loop, so the CLI is driven
with asyncio subprocesses: a blocking `subprocess.run` would stop the gateway
the CLI is talking to. stdout is a pipe, so `watch` prints plain lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from aiohttp import web

from praxiom_client import RetryPolicy, StreamLost, follow
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    REPO,
    LiveGateway,
    RunnerHarness,
    builtin_registry,
    free_port,
    spawn,
    wait_for_status,
)
from tests.tcp_proxy import TcpProxy

TERMINAL = {"completed", "failed", "cancelled"}
VALIDATION_KIT_PHASES = ["assumption_map", "research_plan", "interview_guide", "complete"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def error_line(self) -> str:
        """The single `error:` line on stderr, with no traceback around it."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: "), self.err
        return lines[0]


class Cli:
    """Starts `python -m praxiom_progress.cli.main ...` with PRAXIOM_URL and PRAXIOM_TOKEN set
    for the test."""

    def __init__(self, url: str, token: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIOM_")}
        self.env.update({"PYTHONPATH": str(REPO), "PRAXIOM_URL": url, "PRAXIOM_TOKEN": token})
        self.started: list[asyncio.subprocess.Process] = []

    async def start(
        self, *args: str, env: Mapping[str, str | None] | None = None
    ) -> asyncio.subprocess.Process:
        environ = {**self.env, **(env or {})}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "praxiom_progress.cli.main",
            *args,
            cwd=REPO,
            env={k: v for k, v in environ.items() if v is not None},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started.append(process)
        return process

    async def __call__(
        self, *args: str, env: Mapping[str, str | None] | None = None, timeout_s: float = 20
    ) -> Result:
        process = await self.start(*args, env=env)
        return await finish(process, timeout_s)

    def kill_all(self) -> None:
        for process in self.started:
            if process.returncode is None:
                process.kill()


async def finish(process: asyncio.subprocess.Process, timeout_s: float = 20) -> Result:
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def read_line(process: asyncio.subprocess.Process, timeout_s: float = 10) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    assert line, "the CLI ended its output early"
    return line.decode().rstrip("\n")


@pytest.fixture
async def cli(live_gateway: LiveGateway, member: IssuedToken) -> AsyncIterator[Cli]:
    runner = Cli(live_gateway.url, member.token)
    yield runner
    runner.kill_all()
    for process in runner.started:
        await process.wait()


async def row_of(store: TaskStore, task_id: UUID) -> Task:
    row = await store.get_task(task_id)
    assert row is not None
    return row


def phases(lines: list[str]) -> list[str]:
    """The phase column of `watch`'s plain lines (status  pct%  phase  message)."""
    return [line.split("  ")[2] for line in lines if len(line.split("  ")) > 2]


def pcts(lines: list[str]) -> list[int]:
    return [int(line.split("  ")[1].rstrip("%")) for line in lines]


# -- spawn, status, cancel --------------------------------------------------------------------


async def test_spawn_prints_the_id_of_a_task_that_exists(
    cli: Cli, member: IssuedToken, task_store: TaskStore
) -> None:
    result = await cli(
        "spawn", "--type", "validation_kit", "--params", '{"step_seconds": 0.5, "company": "Acme"}'
    )
    assert result.code == 0, result.err
    assert result.err == ""
    (line,) = result.lines
    row = await task_store.get_task(UUID(line))
    assert row is not None
    assert row.task_type == "validation_kit" and row.workspace_id == member.workspace_id
    assert row.params == {"step_seconds": 0.5, "company": "Acme"}

    explicit = await cli("spawn", "--type", "research", "--workspace-id", str(member.workspace_id))
    assert explicit.code == 0, explicit.err
    row = await task_store.get_task(UUID(explicit.out.strip()))
    assert row is not None and row.task_type == "research" and row.params == {}


async def test_status_prints_the_payload_on_one_line(
    cli: Cli, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    result = await cli("status", str(task_id))
    assert result.code == 0, result.err
    (line,) = result.lines
    assert json.loads(line) == task_payload(await row_of(task_store, task_id))


async def test_cancel_prints_the_cancelled_payload_and_a_second_cancel_is_one_error_line(
    cli: Cli, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    result = await cli("cancel", str(task_id))
    assert result.code == 0, result.err
    (line,) = result.lines
    cancelled = json.loads(line)
    assert cancelled["id"] == str(task_id) and cancelled["status"] == "cancelled"
    assert (await row_of(task_store, task_id)).status == "cancelled"

    again = await cli("cancel", str(task_id))
    assert again.code == 1
    assert again.out == ""
    assert again.error_line() == "error: the task is already cancelled"


# -- watch ------------------------------------------------------------------------------------


async def test_watch_follows_a_task_to_completed_and_exits_0(
    cli: Cli, runners: RunnerHarness
) -> None:
    spawned = await cli("spawn", "--type", "validation_kit", "--params", '{"step_seconds": 0.05}')
    task_id = spawned.out.strip()
    process = await cli.start("watch", task_id)
    first = await read_line(process)  # watching before the task starts: every phase is seen
    assert first.startswith("pending  0%")
    runners.start(builtin_registry())
    result = await finish(process)
    assert result.code == 0, result.err
    assert result.err == ""
    lines = [first, *result.lines]
    # "running": the claimed state (issue 13), before the first report.
    assert [p for p in phases(lines) if p not in ("pending", "running")] == VALIDATION_KIT_PHASES
    assert pcts(lines) == sorted(pcts(lines))
    assert len(lines) == len(set(lines))
    assert lines[-1] == (
        "completed  100%  complete  Your Validation Kit is ready — 3 documents generated."
    )


async def test_watch_exits_1_on_failed_and_prints_the_error(
    cli: Cli, runners: RunnerHarness, member: IssuedToken, task_store: TaskStore
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(
        task_store,
        member.workspace_id,
        "validation_kit",
        step_seconds=0.05,
        fail_at="research_plan",
    )
    result = await cli("watch", str(task_id))
    assert result.code == 1
    assert result.error_line() == "error: Simulated failure at research_plan"
    assert result.lines[-1].startswith("failed  50%  research_plan")


async def test_watch_exits_3_when_the_task_is_cancelled_while_watching(
    cli: Cli, runners: RunnerHarness, member: IssuedToken, task_store: TaskStore
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=30)
    process = await cli.start("watch", str(task_id))
    while not (await read_line(process)).startswith("running  15%  assumption_map"):
        pass
    cancelled = await cli("cancel", str(task_id))
    assert cancelled.code == 0, cancelled.err
    result = await finish(process, 10)
    assert result.code == 3, result.err
    assert result.err == ""
    assert result.lines[-1].startswith("cancelled  ")


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"step_seconds": 0}, "completed", 0),
        ({"step_seconds": 0, "fail_at": "assumption_map"}, "failed", 1),
        (None, "cancelled", 3),
    ],
)
async def test_watch_on_a_finished_task_exits_at_once_with_its_code(
    cli: Cli,
    runners: RunnerHarness,
    member: IssuedToken,
    task_store: TaskStore,
    params: dict[str, Any] | None,
    status: str,
    code: int,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", **(params or {}))
    if params is None:
        await task_store.cancel_task(task_id)
    else:
        runners.start(builtin_registry())
        await wait_for_status(task_store, task_id, TERMINAL)
    result = await cli("watch", str(task_id), timeout_s=10)
    assert result.code == code, result.err
    (line,) = result.lines
    assert line.startswith(f"{status}  ")
    if status == "failed":
        assert result.error_line() == "error: Simulated failure at assumption_map"
    else:
        assert result.err == ""


class CountingProxy(TcpProxy):
    connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await super()._serve(reader, writer)


@pytest.fixture
async def proxy(live_gateway: LiveGateway) -> AsyncIterator[CountingProxy]:
    port = int(live_gateway.url.rsplit(":", 1)[1])
    tcp = CountingProxy("127.0.0.1", port)
    await tcp.start()
    yield tcp
    await tcp.cut()


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
async def test_watch_reconnects_after_a_dropped_connection_and_still_exits_0(
    cli: Cli,
    runners: RunnerHarness,
    member: IssuedToken,
    task_store: TaskStore,
    proxy: CountingProxy,
    as_json: bool,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.5)
    process = await cli.start(
        "watch",
        str(task_id),
        *(["--json"] if as_json else []),
        env={"PRAXIOM_URL": f"http://127.0.0.1:{proxy.port}"},
    )
    lines = [await read_line(process)]  # pending
    runners.start(builtin_registry())
    lines.append(await read_line(process))  # running
    await proxy.cut()  # resets the open stream and refuses new connections ...
    await asyncio.sleep(0.8)  # ... through at least one failed reconnection ...
    await proxy.restore()  # ... then lets the next one through
    result = await finish(process)
    assert result.code == 0, result.err
    assert result.err == ""
    assert proxy.connections >= 2
    lines += result.lines
    if as_json:
        payloads = [json.loads(line) for line in lines]
        versions = [payload["version"] for payload in payloads]
        assert versions == sorted(set(versions)), "a version was printed twice or went back"
        assert payloads[-1]["status"] == "completed"
        assert versions[-1] == (await row_of(task_store, task_id)).version
    else:
        assert len(lines) == len(set(lines)), "a state was printed twice"
        assert pcts(lines) == sorted(pcts(lines)), "the progress went back"
        assert lines[-1].startswith("completed  100%  complete")


async def test_the_stream_gives_up_after_consecutive_failed_reconnections(
    live_gateway: LiveGateway, member: IssuedToken, task_store: TaskStore, proxy: CountingProxy
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    base = f"http://127.0.0.1:{proxy.port}/api/tasks/{task_id}"
    delays: list[float] = []

    async def no_sleep(delay_s: float) -> None:
        delays.append(delay_s)

    async with aiohttp.ClientSession() as session:
        payloads = follow(
            session,
            f"{base}/progress",
            f"{base}/status",
            {"Authorization": f"Bearer {member.token}"},
            policy=RetryPolicy(max_failures=4),
            sleep=no_sleep,
        )
        first = await anext(payloads)
        assert first["status"] == "pending"
        await proxy.cut()
        with pytest.raises(StreamLost, match="Connection refused"):
            await anext(payloads)
    assert delays == [0.5, 1.0, 2.0, 4.0]  # the drop, then three refusals; the fourth gives up


async def test_a_204_on_reconnection_without_a_terminal_state_seen_asks_for_the_status(
    member: IssuedToken,
) -> None:
    """A gateway that says "nothing newer" yet the stream never carried the end: the client
    asks `/status` once instead of reconnecting forever."""
    seen: list[str | None] = []
    running = {"id": str(uuid.uuid4()), "status": "running", "progress_pct": 50, "version": 3}
    completed = {**running, "status": "completed", "progress_pct": 100, "version": 4}

    async def progress(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Last-Event-ID"))
        if len(seen) > 1:
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"id: 3\ndata: {json.dumps(running)}\n\n".encode())
        return response  # ends without a terminal state: the client reconnects

    async def status(request: web.Request) -> web.Response:
        return web.json_response(completed)

    app = web.Application()
    app.router.add_get("/progress", progress)
    app.router.add_get("/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            received = [
                payload
                async for payload in follow(
                    session, f"{base}/progress", f"{base}/status", {}, sleep=lambda s: _noop()
                )
            ]
    finally:
        await runner.cleanup()
    assert seen == [None, "3"]
    assert received == [running, completed]


async def _noop() -> None:
    return None


# -- errors: one line each, never a traceback -------------------------------------------------


async def test_errors_are_one_line_with_exit_1(cli: Cli, live_gateway: LiveGateway) -> None:
    unknown = str(uuid.uuid4())
    closed_port = f"http://127.0.0.1:{free_port()}"
    cases: list[tuple[list[str], dict[str, str | None], str]] = [
        (["status", unknown], {}, "error: 404 NOT_FOUND: No such task"),
        (["cancel", unknown], {}, "error: 404 NOT_FOUND: No such task"),
        (["watch", unknown], {}, "error: 404 NOT_FOUND: No such task"),
        (["status", unknown, "--token", "pxp_nope"], {}, "error: 401 UNAUTHENTICATED: "),
        (["watch", unknown], {"PRAXIOM_TOKEN": "pxp_nope"}, "error: 401 UNAUTHENTICATED: "),
        (["spawn", "--type", "validation_kit"], {"PRAXIOM_TOKEN": "x"}, "error: 401 "),
        (["spawn", "--type", "nope"], {}, "error: 422 VALIDATION_ERROR: "),
        (["status", unknown], {"PRAXIOM_URL": closed_port}, f"error: cannot reach {closed_port}"),
        (["watch", unknown, "--url", closed_port], {}, f"error: cannot reach {closed_port}"),
        (["spawn", "--type", "x"], {"PRAXIOM_URL": closed_port}, "error: cannot reach "),
        (["status", unknown], {"PRAXIOM_URL": "http://no-such-host.invalid"}, "error: cannot"),
    ]
    results = await asyncio.gather(*(cli(*argv, env=env) for argv, env, _ in cases))
    for (argv, _, expected), result in zip(cases, results, strict=True):
        assert result.code == 1, (argv, result)
        assert result.out == "", (argv, result)
        assert result.error_line().startswith(expected), (argv, result.err)
    assert "Connection refused" in results[7].err
    assert "task_type" in results[6].err  # the invalid field is named


async def test_usage_errors_exit_2_with_one_line(cli: Cli) -> None:
    task = str(uuid.uuid4())
    cases: list[tuple[list[str], dict[str, str | None], str]] = [
        (["status", task], {"PRAXIOM_TOKEN": None}, "PRAXIOM_TOKEN"),
        (["watch", task], {"PRAXIOM_TOKEN": ""}, "PRAXIOM_TOKEN"),
        (["spawn", "--type", "validation_kit", "--params", "[1, 2]"], {}, "JSON object"),
        (["spawn", "--type", "validation_kit", "--params", "{oops"], {}, "JSON object"),
        (["spawn", "--type", "validation_kit", "--params", '{"a": NaN}'], {}, "JSON object"),
        (["status", "not-a-uuid"], {}, "UUID"),
        (["spawn"], {}, "--type"),
        (["status", task, "--url", "ftp://example.com"], {}, "--url"),
    ]
    results = await asyncio.gather(*(cli(*argv, env=env) for argv, env, _ in cases))
    for (argv, _, expected), result in zip(cases, results, strict=True):
        assert result.code == 2, (argv, result)
        assert result.out == "", (argv, result)
        assert expected in result.error_line(), (argv, result.err)


async def test_the_http_commands_wait_out_a_busy_gateway(cli: Cli) -> None:
    """The CLI is built on the client: a 503 with `Retry-After: 1` is waited out, then the
    answer printed as usual."""
    task_id = str(uuid.uuid4())
    arrivals: list[float] = []
    payload = {"id": task_id, "status": "running", "progress_pct": 5, "version": 2}

    async def status(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        if len(arrivals) == 1:
            busy = {"error": {"code": "UNAVAILABLE", "message": "Busy"}}
            return web.json_response(busy, status=503, headers={"Retry-After": "1"})
        return web.json_response(payload)

    app = web.Application()
    app.router.add_get(f"/api/tasks/{task_id}/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        result = await cli("status", task_id, "--url", f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    assert result.code == 0, result.err
    assert json.loads(result.out) == payload and result.err == ""
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 1.0
