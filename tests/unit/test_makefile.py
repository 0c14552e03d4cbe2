"""What each make target installs, read from `make -n` (nothing is run): `install` and `run`
get the runtime and the embedded servers only; `test` and `lint` add the test tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def installs(target: str, venv: Path) -> list[str]:
    dry = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return [line for line in dry.stdout.splitlines() if " pip install " in line]


@pytest.mark.parametrize("target", ["install", "run"])
def test_install_and_run_install_the_runtime_and_embedded_servers_only(
    target: str, tmp_path: Path
) -> None:
    lines = installs(target, tmp_path / "venv")
    assert any("-e clients/python -e '.[embedded]'" in line for line in lines), lines
    assert not any("[test" in line or "test," in line for line in lines), lines


@pytest.mark.parametrize("target", ["test", "lint", "test-faults"])
def test_the_test_targets_add_the_test_tools(target: str, tmp_path: Path) -> None:
    lines = installs(target, tmp_path / "venv")
    assert any("-e clients/python -e '.[test,embedded]'" in line for line in lines), lines
