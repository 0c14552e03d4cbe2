"""The supervisor's own rules, with small stand-in commands instead of gateways: the back-off
between restarts, the kill after the stop grace, the port it holds."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from praxiom_progress.gateway.supervisor import Supervisor, hold_port
from praxiom_progress.taskstate.settings import Settings

EXITS_AT_ONCE = [sys.executable, "-c", "raise SystemExit(3)"]


async def test_a_command_that_cannot_start_is_retried_with_the_back_off(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    missing = str(tmp_path / "no-such-program")
    supervisor = Supervisor([missing], {}, 1, settings(gateway_restart_delay_s=0.05))
    running = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.restarts >= 2)
    supervisor.stop()
    await running
    exits = messages(caplog, "gateway_process_exited")
    assert exits[0].startswith("gateway process 0 could not start ([Errno 2] No such file")
    assert exits[0].endswith(": starting another in 0.05 s")


def deaf(ready: Path) -> list[str]:
    """A process that ignores SIGTERM, says so by creating a file, then sleeps."""
    return [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'a').close(); time.sleep(60)",
        str(ready),
    ]


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


def settings(**changes: float) -> Settings:
    return Settings().replace(**changes)


def messages(caplog: pytest.LogCaptureFixture, action: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway" and getattr(r, "action", "") == action
    ]


async def test_restarts_back_off_doubling_up_to_the_maximum(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    supervisor = Supervisor(
        EXITS_AT_ONCE,
        {},
        1,
        settings(gateway_restart_delay_s=0.05, gateway_restart_max_delay_s=0.2),
    )
    running = asyncio.create_task(supervisor.run())
    await until(lambda: supervisor.restarts >= 5)
    supervisor.stop()
    await running
    delays = [m.rpartition(" in ")[2] for m in messages(caplog, "gateway_process_exited")]
    assert delays[:5] == ["0.05 s", "0.1 s", "0.2 s", "0.2 s", "0.2 s"]
    assert all(" exited with 3:" in m for m in messages(caplog, "gateway_process_exited"))


async def test_a_process_deaf_to_sigterm_is_killed_after_the_grace(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    ready = tmp_path / "ready"
    supervisor = Supervisor(deaf(ready), {}, 1, settings(gateway_stop_grace_s=0.5))
    running = asyncio.create_task(supervisor.run())
    await until(ready.exists)  # it ignores SIGTERM from now on
    started = time.monotonic()
    supervisor.stop()
    async with asyncio.timeout(10):
        await running
    assert 0.5 <= time.monotonic() - started < 5
    killed = messages(caplog, "gateway_process_killed")
    assert len(killed) == 1 and "still running after 0.5 s: killed" in killed[0]
    assert supervisor.restarts == 0


def test_hold_port_picks_one_port_and_leaves_it_to_listeners() -> None:
    held, port = hold_port("127.0.0.1", 0)
    try:
        assert port > 0 and [s.getsockname()[1] for s in held] == [port]
        with pytest.raises(ConnectionRefusedError):  # held, not listening
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as listener:  # a gateway process binds beside it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as stranger, pytest.raises(OSError):  # without SO_REUSEPORT
            stranger.bind(("127.0.0.1", port))
    finally:
        for sock in held:
            sock.close()


def test_hold_port_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            hold_port("127.0.0.1", taken.getsockname()[1])
