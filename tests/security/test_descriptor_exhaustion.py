"""A gateway limited to 256 descriptors, flooded with 1,000 connections that never send a
request: it does not spin, its log stays short, and a probe's /healthz is still answered at
once (a new connection takes the place of the oldest idle one: GATEWAY_MAX_CONNECTIONS)."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from praxiom_progress.taskstate.settings import Settings
from tests.conftest import REPO, free_port, settings_env

LIMIT = int(os.environ.get("FLOOD_FD_LIMIT", 256))
ATTEMPTS = 1000


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _healthz(port: int) -> float:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    return time.monotonic() - started


async def _flood(port: int) -> list[asyncio.StreamWriter]:
    async def one() -> asyncio.StreamWriter | None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        writer.write(b"GET /api/tasks/x/status HTTP/1.1\r\nHost: g\r\n")  # and nothing more
        return writer

    opened = await asyncio.gather(*(one() for _ in range(ATTEMPTS)))
    return [w for w in opened if w is not None]


async def test_a_flood_of_idle_connections_neither_spins_nor_locks_out_a_probe(
    settings: Settings, tmp_path: Path
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the flood's own sockets
    port = free_port()
    env = settings_env(settings, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port))
    env["GATEWAY_HEADER_TIMEOUT"] = "60"  # the flood stays: the header timeout cannot help

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "praxiom_progress.cli.main",
            "gateway",
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limited,
        )
    flood: list[asyncio.StreamWriter] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await _healthz(port)
                break
            except (OSError, AssertionError, TimeoutError):
                assert proc.returncode is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        flood = await _flood(port)
        await asyncio.sleep(0.5)
        cpu_before = _cpu_s(proc.pid)
        probes = [await _healthz(port) for _ in range(5)]
        await asyncio.sleep(2.0)
        cpu_share = (_cpu_s(proc.pid) - cpu_before) / (2.0 + sum(probes))
        assert proc.returncode is None, log.read_text()
    finally:
        for writer in flood:
            writer.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    lines = log.read_text().splitlines()
    print(
        f"probes {[round(p * 1000, 1) for p in probes]} ms, cpu {cpu_share:.0%}, log {len(lines)}"
    )
    assert max(probes) < 0.5, probes  # the 100 ms, with room for a loaded machine
    assert cpu_share < 0.5, cpu_share
    assert len(lines) < 100, "\n".join(lines[-20:])
    assert any('"connections_shed"' in line for line in lines)
    assert not any("Too many open files" in line for line in lines), "it ran out"
