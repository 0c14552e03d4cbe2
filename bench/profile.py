"""`BENCH_PROFILE=1`: where a process spends its time, by py-spy sampling.

`py-spy record --format raw --nonblocking` writes collapsed stacks (`frame;frame;... count`)
of the busy samples only (idle threads, e.g. waiting in epoll, are left out). A stack's last
frame is where the time was spent itself ("own"); every frame in it is "inclusive".
Percentages are of wall-clock samples, so they read as % of one core.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.procs import REPO

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PREFIXES = ("site-packages/", "lib/python3.11/", f"{REPO}/")
#: Inclusive time is listed for the project's own code only: the frames above it (the event
#: loop, runpy) are in every stack and say nothing.
_OWN_CODE = (" (praxiom_progress/",)


@dataclass
class Profile:
    what: str
    seconds: float
    busy_pct: float  # busy samples over wall samples: the process's CPU, in % of one core
    own: list[tuple[str, float]]  # (function, % of wall samples), highest first
    inclusive: list[tuple[str, float]]  # the project's own functions only
    error: str = ""


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for prefix in _PREFIXES:
        if prefix in path:
            path = path.split(prefix, 1)[1]
            break
    return f"{match['name']} ({path})"


def summarize(raw: str, what: str, seconds: float, top: int = 10) -> Profile:
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        busy += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            if any(marker in frame for marker in _OWN_CODE):
                inclusive[frame] = inclusive.get(frame, 0) + count
    wall = RATE_HZ * seconds

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [(name, 100.0 * n / wall) for name, n in best]

    return Profile(what, seconds, 100.0 * busy / wall, ranked(own), ranked(inclusive))


async def record(pid: int, seconds: float, what: str) -> Profile:
    """Sample `pid` for `seconds` without pausing it (`--nonblocking`)."""
    py_spy = Path(REPO, ".venv", "bin", "py-spy")
    executable = str(py_spy) if py_spy.exists() else "py-spy"  # noqa: ASYNC240
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "profile.raw")
        process = await asyncio.create_subprocess_exec(
            executable, "record", "--pid", str(pid),
            "--duration", str(int(seconds)), "--rate", str(RATE_HZ), "--format", "raw",
            "--nonblocking", "--output", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await process.communicate()
        if process.returncode != 0 or not out.exists():  # noqa: ASYNC240 (a tiny local file)
            error = stderr.decode(errors="replace").strip().splitlines()
            return Profile(what, seconds, 0.0, [], [], error=error[-1] if error else "failed")
        return summarize(out.read_text(), what, int(seconds))  # noqa: ASYNC240
