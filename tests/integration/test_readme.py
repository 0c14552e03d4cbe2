"""The README's "Add your own task type" section, run as written, so it cannot go stale.

Its Python blocks are written to the files their first line names (in a directory the
project has never seen); its shell blocks are run line by line with bash, against a live
gateway, with `praxiom-progress` on the PATH: `export` lines set the environment, a line
ending in `&` starts a background process (the runner), every other line must succeed unless
a `text` block follows it, which is then its exact output.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from praxiom_progress.taskstate.accounts import IssuedToken
from tests.conftest import REPO, LiveGateway, bearer, settings_env, wait_for

SECTION = "## Add your own task type"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    language: str
    text: str


def readme_blocks(heading: str = SECTION) -> list[Block]:
    """The fenced blocks of the README's section under `heading`, in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index(heading)
    end = readme.find("\n## ", start + len(heading))
    section = readme[start : end if end != -1 else None]
    return [Block(m[1], m[2]) for m in _BLOCK.finditer(section)]


def write_module(block: Block, root: Path) -> None:
    first, _, _ = block.text.partition("\n")
    assert first.startswith("# "), f"a Python block names its file first: {first!r}"
    path = root / first[2:].strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "__init__.py").touch()
    path.write_text(block.text, encoding="utf-8")


def shell_lines(text: str) -> list[str]:
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


class Shell:
    """Runs README lines as a reader would, in `cwd`, keeping exported variables."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.background: list[asyncio.subprocess.Process] = []

    async def run(self, line: str) -> tuple[int, str]:
        if line.startswith("export "):
            code, output = await self._bash(f"{line}\nenv -0")
            assert code == 0, output
            self.env = dict(item.split("=", 1) for item in output.split("\0") if "=" in item)
            return 0, ""
        if line.rstrip().endswith("&"):
            command = line.rstrip()[:-1]
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f"exec {command}", cwd=self.cwd, env=self.env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            self.background.append(proc)
            return 0, ""
        return await self._bash(line)

    async def _bash(self, script: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, output.decode()

    async def stop(self) -> None:
        for proc in self.background:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _catalogued(gateway: LiveGateway, token: str, names: set[str]) -> bool:
    async with aiohttp.ClientSession() as session:
        url = f"{gateway.url}/api/task-types"
        async with session.get(url, headers=bearer(token)) as response:
            body: dict[str, Any] = await response.json()
    served = {t["name"] for t in body["task_types"] if t["served"]}
    return names <= served


async def test_the_readme_section_runs_as_written(
    live_gateway: LiveGateway, member: IssuedToken, tmp_path: Path
) -> None:
    blocks = readme_blocks()
    assert [b.language for b in blocks] == ["python", "sh", "sh", "sh", "text"]
    for block in blocks:
        if block.language == "python":
            write_module(block, tmp_path)
    env = settings_env(live_gateway.settings)
    env.pop("PYTHONPATH")  # the project is installed; the README sets its own
    env.pop("RUNNER_TASK_MODULES")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update({"PRAXIOM_URL": live_gateway.url, "PRAXIOM_TOKEN": member.token})
    shell = Shell(tmp_path, env)
    try:
        for index, block in enumerate(blocks):
            if block.language != "sh":
                continue
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            lines = shell_lines(block.text)
            for number, line in enumerate(lines, 1):
                code, output = await shell.run(line)
                if number == len(lines) and following and following.language == "text":
                    assert output.strip() == following.text.strip(), line
                    continue
                assert code == 0, f"{line}\n{output}"
                if line.rstrip().endswith("&"):  # a reader waits for the runner to start
                    await wait_for(
                        lambda: _catalogued(live_gateway, member.token, {"export_csv"}), 20
                    )
    finally:
        await shell.stop()
