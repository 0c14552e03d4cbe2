"""`praxiom-progress gateway` as a real process: it starts, serves, stops on SIGTERM, and
refuses a port that is taken with one clear line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import aiohttp
import pytest

from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import REPO, bearer, free_port, spawn

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class GatewayProcess:
    def __init__(self, settings: Settings, port: int, workdir: Path, **extra_env: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout_path = workdir / f"gateway-{port}.out"
        self.stderr_path = workdir / f"gateway-{port}.err"
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": settings.database_url,
                "REDIS_URL": settings.redis_url,
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(port),
                "PYTHONPATH": str(REPO),
                "LOG_LEVEL": "INFO",
                **extra_env,
            }
        )
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "praxiom_progress.cli.main", "gateway"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=err,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway still running after {timeout_s}s:\n{self.stderr()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def wait_until_serving(self, session: aiohttp.ClientSession) -> None:
        """Poll an endpoint until it answers 401 (up, and refusing a caller with no token)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"gateway exited early:\n{self.stderr()}"
            try:
                async with session.get(f"{self.url}/api/tasks/{uuid4()}/status") as resp:
                    assert resp.status == 401, await resp.text()
                    return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway not serving within {START_TIMEOUT_S}s")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def gateway_process(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(port: int | None = None, **extra_env: str) -> GatewayProcess:
        process = GatewayProcess(settings, port or free_port(), tmp_path, **extra_env)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


async def first_event(resp: aiohttp.ClientResponse) -> bytes:
    """The lines of the first SSE event, up to the blank line that ends it (CRLF or LF)."""
    lines: list[bytes] = []
    while True:
        line = await resp.content.readline()
        assert line, "the stream ended before its first event"
        if not line.strip():
            if lines:
                return b"".join(lines)
            continue
        lines.append(line)


async def test_gateway_serves_a_spawn_and_exits_0_on_sigterm(
    gateway_process: Callable[..., GatewayProcess],
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    gateway = gateway_process()
    async with aiohttp.ClientSession() as session:
        await gateway.wait_until_serving(session)
        async with session.post(
            f"{gateway.url}/api/tasks/spawn",
            json={"task_type": "validation_kit", "params": {"step_seconds": 0}},
            headers=bearer(member.token),
        ) as resp:
            assert resp.status == 202, await resp.text()
            body = await resp.json()
        row = await task_store.get_task(UUID(body["task_id"]))
        assert row is not None and row.status == "pending"
        assert row.workspace_id == member.workspace_id

        async with session.get(
            f"{gateway.url}/api/tasks/{body['task_id']}/status", headers=bearer(member.token)
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["id"] == body["task_id"]

    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert await gateway.wait(STOP_TIMEOUT_S) == 0, gateway.stderr()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert "Traceback" not in gateway.stderr()


async def test_sigterm_ends_an_open_stream_promptly_and_cleanly(
    gateway_process: Callable[..., GatewayProcess],
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    gateway = gateway_process()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await gateway.wait_until_serving(session)
        async with session.get(
            f"{gateway.url}/api/tasks/{task_id}/progress", headers=bearer(member.token)
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            async with asyncio.timeout(5):
                first = await first_event(resp)
            assert b"data: " in first and b'"status":"pending"' in first

            started = time.monotonic()
            gateway.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_TIMEOUT_S):
                rest = await resp.content.read()  # to the end of the stream, without an error
            assert time.monotonic() - started < STOP_TIMEOUT_S
            assert b"data: " not in rest  # the pending task did not change

    assert await gateway.wait(STOP_TIMEOUT_S) == 0, gateway.stderr()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert "Traceback" not in gateway.stderr()


@pytest.mark.parametrize("log_level", ["WARNING", "INFO"])
async def test_a_taken_port_exits_1_with_one_error_line(
    log_level: str, gateway_process: Callable[..., GatewayProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = gateway_process(port, LOG_LEVEL=log_level)
        assert await gateway.wait(START_TIMEOUT_S) == 1, gateway.stderr()

    stderr = gateway.stderr()
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert errors[0].startswith(f"error: cannot listen on 127.0.0.1:{port}"), stderr
    # Nothing else is a complaint: no warnings about tasks or connections left behind.
    # (The service logs JSON lines by default: `"level": "INFO"`.)
    assert not [line for line in lines[:-1] if '"level": "INFO"' not in line], stderr
    if log_level == "WARNING":
        assert lines == errors, stderr
