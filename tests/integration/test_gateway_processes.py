"""GATEWAY_PROCESSES: the `gateway` command as a supervisor of real gateway processes on one
port. Every process is found by its parent's pid and signalled by pid; which process holds a
connection is read from /proc (its descriptors against the kernel's TCP table)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from uuid import UUID, uuid4

import aiohttp
import pytest

from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.parsing import cores
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import REPO, bearer, free_port, spawn, wait_for
from tests.process_sockets import (
    TCP_ESTABLISHED,
    TCP_LISTEN,
    alive,
    children,
    sockets_on_port,
)

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
STREAMS = 40  # all on one process by chance: 2 in 2**40


class Supervised:
    """One `praxiom-progress gateway` command with GATEWAY_PROCESSES set, by pid."""

    def __init__(self, settings: Settings, workdir: Path, **extra_env: str) -> None:
        self.port = int(extra_env.pop("GATEWAY_PORT", "0")) or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gateway-{self.port}.log"
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": settings.database_url,
                "REDIS_URL": settings.redis_url,
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(self.port),
                "PYTHONPATH": str(REPO),
                "LOG_LEVEL": "INFO",
                "LOG_FORMAT": "text",
                "GATEWAY_RESTART_DELAY": "0.2",
                **extra_env,
            }
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "praxiom_progress.cli.main", "gateway"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.seen: set[int] = set()  # every gateway process it started, to clean up

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> set[int]:
        found = children(self.proc.pid)
        self.seen |= found
        return found

    def listening(self) -> set[int]:
        return {pid for pid in self.workers() if sockets_on_port(pid, self.port, TCP_LISTEN)}

    async def wait_listening(self, count: int, *, other_than: set[int] = frozenset()) -> set[int]:
        """Until `count` processes (none of `other_than`) listen on the port."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"supervisor exited early:\n{self.log()}"
            found = self.listening()
            if len(found) == count and not found & other_than:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{found} listening, wanted {count}:\n{self.log()}")
            await asyncio.sleep(0.1)

    async def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway still running after {timeout_s}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill_all(self) -> None:
        self.workers()
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def supervised(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(**extra_env: str) -> Supervised:
        gateway = Supervised(settings, tmp_path, **extra_env)
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            gateway.kill_all()


async def open_streams(
    stack: AsyncExitStack, session: aiohttp.ClientSession, url: str, task_id: UUID, token: str
) -> list[aiohttp.ClientResponse]:
    """STREAMS streams of one task, each on a connection of its own, past its first event."""

    async def one() -> aiohttp.ClientResponse:
        resp = await stack.enter_async_context(
            session.get(f"{url}/api/tasks/{task_id}/progress", headers=bearer(token))
        )
        assert resp.status == 200, await resp.text()
        async with asyncio.timeout(10):
            while (await resp.content.readline()).strip() != b"":
                pass  # the first event's lines, up to its blank line
        return resp

    return list(await asyncio.gather(*(one() for _ in range(STREAMS))))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # One connection per stream (no pooling limit), no total timeout on a stream.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        yield client


async def test_two_processes_serve_one_port_and_both_take_connections(
    supervised: Callable[..., Supervised],
    session: aiohttp.ClientSession,
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    gateway = supervised(GATEWAY_PROCESSES="2")
    workers = await gateway.wait_listening(2)
    assert sockets_on_port(gateway.proc.pid, gateway.port, TCP_LISTEN) == 0  # holds, serves not

    async with AsyncExitStack() as stack:
        await open_streams(stack, session, gateway.url, task_id, member.token)

        async def held_by_each() -> dict[int, int] | None:
            # The start-up probes' connections may still be closing on a busy machine.
            held = {pid: sockets_on_port(pid, gateway.port, TCP_ESTABLISHED) for pid in workers}
            return held if sum(held.values()) == STREAMS else None

        held = await wait_for(held_by_each, timeout_s=10)
        assert all(count > 0 for count in held.values()), held
    assert "2 gateway processes on" in gateway.log()


async def test_a_killed_process_is_restarted_and_the_port_keeps_answering(
    supervised: Callable[..., Supervised], session: aiohttp.ClientSession
) -> None:
    # Every probe is a 401: no limit on them here.
    gateway = supervised(GATEWAY_PROCESSES="2", AUTH_FAILURES_PER_MINUTE="100000")
    victim, survivor = sorted(await gateway.wait_listening(2))
    os.kill(victim, signal.SIGKILL)
    # A connect the kernel queued on the victim's socket before the process was gone is reset
    # with that socket (SO_REUSEPORT hands a closing socket's queue to nobody): lost with the
    # process, as its open streams are, and nothing a supervisor can save. From then on:
    await wait_for(lambda: asyncio.sleep(0, result=victim not in gateway.listening()))

    # Whatever the supervisor is doing meanwhile, every request is answered.
    restarted: set[int] = set()
    answered = 0
    deadline = time.monotonic() + START_TIMEOUT_S
    while not restarted:
        async with session.get(f"{gateway.url}/api/tasks/{uuid4()}/status") as resp:
            assert resp.status == 401, await resp.text()
        answered += 1
        restarted = gateway.listening() - {victim, survivor}
        assert time.monotonic() < deadline, f"no new process listening:\n{gateway.log()}"
        await asyncio.sleep(0.05)
    assert answered > 1
    assert gateway.listening() == {survivor, *restarted}
    log = gateway.log()
    assert f"(pid {victim}) exited with -9: starting another in 0.2 s" in log, log
    assert "Traceback" not in log, log


async def test_sigterm_drains_every_process_and_the_command_exits_0(
    supervised: Callable[..., Supervised],
    session: aiohttp.ClientSession,
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    gateway = supervised(GATEWAY_PROCESSES="2")
    workers = await gateway.wait_listening(2)
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, session, gateway.url, task_id, member.token)
        assert all(sockets_on_port(pid, gateway.port, TCP_ESTABLISHED) for pid in workers)

        started = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            rests = await asyncio.gather(*(resp.content.read() for resp in streams))
        assert all(b"data: " not in rest for rest in rests)  # ended cleanly, nothing new

    assert await gateway.wait(STOP_TIMEOUT_S) == 0, gateway.log()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert not children(gateway.proc.pid) and not alive(workers)
    log = gateway.log()
    assert log.count("stopping: ending open streams") == 2, log
    assert "Traceback" not in log and "exited with" not in log, log


async def test_processes_stop_when_their_supervisor_is_killed(
    supervised: Callable[..., Supervised],
) -> None:
    gateway = supervised(GATEWAY_PROCESSES="2")
    workers = await gateway.wait_listening(2)
    gateway.proc.kill()
    gateway.proc.wait(10)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(workers):
        assert time.monotonic() < deadline, f"orphans {workers} still running"
        await asyncio.sleep(0.05)
    with pytest.raises(OSError):  # nobody listens any more
        socket.create_connection(("127.0.0.1", gateway.port), timeout=2).close()


async def test_auto_runs_one_process_per_core(
    supervised: Callable[..., Supervised], session: aiohttp.ClientSession
) -> None:
    gateway = supervised(GATEWAY_PROCESSES="auto")
    if cores() > 1:
        assert len(await gateway.wait_listening(cores())) == cores()
    else:  # one core: one process, the command itself, no supervisor
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sockets_on_port(gateway.proc.pid, gateway.port, TCP_LISTEN):
            assert time.monotonic() < deadline, gateway.log()
            await asyncio.sleep(0.1)
    async with session.get(f"{gateway.url}/api/tasks/{uuid4()}/status") as resp:
        assert resp.status == 401


@pytest.mark.parametrize("raw", ["0", "two", "1.5"])
async def test_bad_gateway_processes_exit_2_with_one_clear_line(
    supervised: Callable[..., Supervised], raw: str
) -> None:
    gateway = supervised(GATEWAY_PROCESSES=raw)
    assert await gateway.wait(START_TIMEOUT_S) == 2, gateway.log()
    assert gateway.log().splitlines() == [
        f"error: GATEWAY_PROCESSES must be auto (one per core) or a whole number from 1 to "
        f"256, got {raw!r}"
    ]


async def test_a_taken_port_exits_1_before_any_process_starts(
    supervised: Callable[..., Supervised],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = supervised(GATEWAY_PROCESSES="2", GATEWAY_PORT=str(port))
        assert await gateway.wait(START_TIMEOUT_S) == 1, gateway.log()
    errors = [line for line in gateway.log().splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "started (pid" not in gateway.log() and not gateway.seen
