"""Debian packages a test needs (nginx, Chromium), installed with apt-get when missing.

As in CI, the machine is a fresh Debian where the suite runs as root: a missing package is
installed, and a test fails, never skips, when it cannot be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

APT_TIMEOUT_S = 600


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"`{' '.join(command)}` did not finish: {exc}", pytrace=False)


def _tail(result: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def ensure_installed(paths: Sequence[Path], packages: Sequence[str]) -> None:
    """Make sure every one of `paths` exists, installing `packages` when one does not."""
    if all(path.exists() for path in paths):
        return
    how = f"apt-get install -y {' '.join(packages)}"
    if shutil.which("apt-get") is None:
        pytest.fail(f"{paths[0].name} is missing and there is no apt-get: {how}", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(f"{paths[0].name} is missing; as root, run: {how}", pytrace=False)
    started = time.monotonic()
    # A failed update may still leave usable package lists: the install decides.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=120"]
    update = _run([*apt, "update"])
    install = _run([*apt, "install", "-y", "--no-install-recommends", *packages])
    if install.returncode != 0:
        pytest.fail(
            f"Installing {', '.join(packages)} failed ({how} exited {install.returncode}).\n"
            f"apt-get update said:\n{_tail(update)}\napt-get install said:\n{_tail(install)}",
            pytrace=False,
        )
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        pytest.fail(f"Still missing after installing: {', '.join(missing)}", pytrace=False)
    print(f"installed {', '.join(packages)} in {time.monotonic() - started:.0f}s")
