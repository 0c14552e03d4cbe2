"""The processes a benchmark drives: a server under test, the load generators, CPU meters.

Everything is measured from outside with psutil, the same way for our gateway, the naive
one, the load generators and the runner, so the figures are comparable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(
    port: int, process: subprocess.Popen[bytes], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def start(
    args: Sequence[str], env: dict[str, str], checkout: Path = REPO
) -> subprocess.Popen[bytes]:
    """A Python child of this repository (or of another `checkout` of it, for an A/B of two
    commits); its output goes to .run/bench-*.log for post-mortems."""
    log_dir = REPO / ".run"
    log_dir.mkdir(exist_ok=True)
    log = open(log_dir / f"bench-{args[1].rsplit('.', 1)[-1]}.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, *args], cwd=checkout, env=env, stdout=log, stderr=log
        )
    finally:
        log.close()


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM this one child by pid, SIGKILL if it will not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Server:
    """A server under test: our gateway or the naive baseline."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        """The process and its children: a supervised gateway's processes (GATEWAY_PROCESSES)."""
        children = psutil.Process(self.pid).children(recursive=True)
        return [self.pid, *(child.pid for child in children)]

    def rss(self) -> int:
        return sum(int(psutil.Process(pid).memory_info().rss) for pid in self.pids())

    def path(self, task_id: object) -> str:
        return f"/api/tasks/{task_id}/progress"


class CpuMeter:
    """CPU seconds used by some processes over a wall-clock window, as % of one core."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.started = time.monotonic()
        self.before = [self._cpu(p) for p in self.processes]

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def seconds(self) -> float:
        """CPU seconds used since the meter started."""
        return sum(self._cpu(p) for p in self.processes) - sum(self.before)

    def percent(self) -> float:
        wall = time.monotonic() - self.started
        used = sum(self._cpu(p) for p in self.processes) - sum(self.before)
        return 100.0 * used / wall if wall > 0 else 0.0


@dataclass
class Opened:
    ready: int
    failed: int
    statuses: dict[str, int]
    ready_ns: list[int]


class LoadGens:
    """Several `bench.loadgen` processes, commanded together; paths are dealt round-robin."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, count: int, port: int, token: str) -> LoadGens:
        args = ["-m", "bench.loadgen", "--port", str(port)] + (["--token", token] if token else [])
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                cwd=REPO,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=256 * 1024 * 1024,
            )
            for _ in range(count)
        ]
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def _ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async def one(process: asyncio.subprocess.Process, command: dict[str, Any]) -> Any:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(command).encode() + b"\n")
            await process.stdin.drain()
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"load generator {process.pid} died")
            return json.loads(line)

        return list(await asyncio.gather(*map(one, self.processes, commands)))

    async def open(
        self,
        paths: Sequence[str],
        *,
        at_ns: int | None = None,
        wait_first: bool = True,
        timeout_s: float = 60.0,
    ) -> Opened:
        n = len(self.processes)
        answers = await self._ask(
            [
                {"cmd": "open", "paths": list(paths[i::n]), "at_ns": at_ns,
                 "wait_first": wait_first, "timeout_s": timeout_s}
                for i in range(n)
            ]
        )  # fmt: skip
        statuses: dict[str, int] = {}
        for answer in answers:
            for status, count in answer["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        return Opened(
            ready=sum(a["ready"] for a in answers),
            failed=sum(a["failed"] for a in answers),
            statuses=statuses,
            ready_ns=[t for a in answers for t in a["ready_ns"]],
        )

    async def reset(self) -> None:
        await self._ask([{"cmd": "reset"}] * len(self.processes))

    async def collect(self) -> tuple[int, int, list[float]]:
        """(publishes received, events received, sorted latencies in ms) since the reset."""
        answers = await self._ask([{"cmd": "collect"}] * len(self.processes))
        latencies = sorted(x for a in answers for x in a["latencies_ms"])
        return sum(a["received"] for a in answers), sum(a["events"] for a in answers), latencies

    async def close_streams(self) -> None:
        await self._ask([{"cmd": "close"}] * len(self.processes))

    async def stop(self) -> None:
        for process in self.processes:
            if process.stdin is not None and process.returncode is None:
                process.stdin.close()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def tcp_counters() -> dict[str, int]:
    """The kernel's TcpExt counters (this network namespace, every process in it): a listen
    queue that overflowed shows as ListenOverflows, and its clients as TCPSynRetrans."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return {}
    rows = [line for line in lines if line and line[0] == "TcpExt:"]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=False))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN when there are none."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return float(sorted_values[index])
