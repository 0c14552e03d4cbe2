"""`praxiom-progress dev` (what `make run` runs) on a machine without servers: embedded
PostgreSQL and Redis, a working system, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from tests.conftest import REPO, free_port, wait_for


def _processes_under(path: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(attrs=["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


async def _read_banner(stdout: asyncio.StreamReader, lines: list[str]) -> str:
    """Read the banner to its last line; return the token it printed."""
    token = ""
    while True:
        raw = await stdout.readline()
        if not raw:
            raise AssertionError("dev exited before its banner ended:\n" + "".join(lines))
        line = raw.decode()
        lines.append(line)
        if line.startswith("token: "):
            token = line.split(" ", 1)[1].strip()
        if line.startswith("Ctrl-C stops everything"):
            return token


async def test_dev_with_no_servers_named_runs_tasks_and_ctrl_c_leaves_nothing(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"GATEWAY_PORT": str(port), "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"})
    # A type of the application's own, loaded by dev's runner: no TASK_TYPES names it.
    env["RUNNER_TASK_MODULES"] = "praxiom_progress.runner.builtin,tests.task_modules"
    env.pop("TASK_TYPES", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "praxiom_progress.cli.main", "dev",
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    try:
        token = await asyncio.wait_for(_read_banner(process.stdout, lines), 60)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/demo" in banner
        assert "embedded" in banner and "watch" in banner and "spawn" in banner
        assert (tmp_path / ".run" / "postgres" / "PG_VERSION").exists()
        assert _processes_under(tmp_path), "the embedded servers should be running"

        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}/api/tasks"
        async with aiohttp.ClientSession(headers=headers) as session:
            body = {"task_type": "validation_kit", "params": {"step_seconds": 0.05}}
            async with session.post(f"{base}/spawn", json=body) as response:
                assert response.status == 202
                task_id = (await response.json())["task_id"]

            async def completed() -> bool:
                async with session.get(f"{base}/{task_id}/status") as response:
                    return (await response.json())["status"] == "completed"

            await wait_for(completed, timeout_s=20)

            # dev accepts every type its runner loaded, and refuses one no runner registered.
            log = tmp_path / "recorded.log"
            body = {"task_type": "recorded", "params": {"log": str(log)}}
            async with session.post(f"{base}/spawn", json=body) as response:
                assert response.status == 202, await response.text()
                task_id = (await response.json())["task_id"]
            await wait_for(completed, timeout_s=20)
            assert task_id in log.read_text()
            body = {"task_type": "never_registered", "params": {}}
            async with session.post(f"{base}/spawn", json=body) as response:
                assert response.status == 422
                assert "recorded" in (await response.json())["fields"]["task_type"][0]

        started = time.monotonic()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert time.monotonic() - started < 15
        assert _processes_under(tmp_path) == [], "Ctrl-C must leave no process behind"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for leftover in _processes_under(tmp_path):  # never leave a server running
            os.kill(int(leftover.split(":")[0]), signal.SIGKILL)
