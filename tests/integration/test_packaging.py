"""The two distributions as a user installs them: wheels built from the checkout with no
index (the build backend is the test tools' hatchling), installed into fresh virtual
environments from the configured package index.

- the server beside an application whose own top-level `cli`, `gateway`, `runner` and
  `bench` packages are on its path: both work, neither shadows the other;
- the client alone, with aiohttp and nothing of the server: it spawns, waits out a 503 with
  `Retry-After: 1`, follows the task to completion and reads its record.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from praxiom_progress.taskstate.accounts import IssuedToken
from tests.conftest import LiveGateway, RunnerHarness, builtin_registry
from tests.integration.test_readme_integration import write_application

REPO = Path(__file__).resolve().parents[2]
#: What aiohttp 3 brings along; the client's environment may hold these and nothing else.
AIOHTTP_AND_ITS_DEPENDENCIES = {
    "aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "idna", "multidict",
    "propcache", "yarl", "typing-extensions", "async-timeout",
}  # fmt: skip
PIP_TOOLS = {"pip", "setuptools", "wheel"}


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, **kwargs
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built without build isolation: no index is asked for a build backend."""
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", out, REPO / "clients" / "python", REPO)  # fmt: skip
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(built) == {"praxiom_client", "praxiom_progress"}, built
    return built


def fresh_venv(path: Path, *wheels: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    python = path / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", *wheels)
    return python


def installed(python: Path) -> set[str]:
    listed = run(python, "-m", "pip", "list", "--format=json").stdout
    return {entry["name"].lower().replace("_", "-") for entry in json.loads(listed)}


def top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist()}


def test_each_wheel_installs_one_package_and_its_types(wheels: dict[str, Path]) -> None:
    server, client = wheels["praxiom_progress"], wheels["praxiom_client"]
    assert top_level(server) == {"praxiom_progress", "praxiom_progress-0.1.0.dist-info"}
    assert top_level(client) == {"praxiom_client", "praxiom_client-0.1.0.dist-info"}
    with zipfile.ZipFile(server) as archive:
        names = set(archive.namelist())
        metadata = archive.read("praxiom_progress-0.1.0.dist-info/METADATA").decode()
    assert {"praxiom_progress/py.typed", "praxiom_progress/taskstate/schema.sql"} <= names
    assert "Requires-Dist: praxiom-client==0.1.0" in metadata
    with zipfile.ZipFile(client) as archive:
        assert "praxiom_client/py.typed" in archive.namelist()
        metadata = archive.read("praxiom_client-0.1.0.dist-info/METADATA").decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires == ["Requires-Dist: aiohttp<4,>=3.14"]


APPLICATION = """
import cli.main, gateway, runner, bench
import praxiom_progress, praxiom_progress.cli.main, praxiom_progress.gateway.app
from praxiom_client import Client
from praxiom_progress import HandlerRegistry, TaskContext, spawn, spawn_sync, SpawnRejected

assert cli.main.__file__.startswith(APP), cli.main.__file__
assert praxiom_progress.cli.main.__file__.startswith(SITE), praxiom_progress.cli.main.__file__
print(cli.main.hello(), gateway.NAME, runner.NAME, bench.NAME, praxiom_progress.__version__)
"""


def application(root: Path, site: Path) -> Path:
    """An application with its own `cli`, `gateway`, `runner` and `bench` packages."""
    app = root / "shop"
    for name in ("cli", "gateway", "runner", "bench"):
        (app / name).mkdir(parents=True)
        (app / name / "__init__.py").write_text(f"NAME = 'shop-{name}'\n")
    (app / "cli" / "main.py").write_text("def hello() -> str:\n    return 'shop-cli'\n")
    (app / "shop.py").write_text(f"APP = {str(app)!r}\nSITE = {str(site)!r}\n" + APPLICATION)
    return app


@pytest.fixture(scope="module")
def server_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment holding the two wheels and what they depend on."""
    venv_dir = tmp_path_factory.mktemp("server") / "venv"
    return fresh_venv(venv_dir, wheels["praxiom_client"], wheels["praxiom_progress"])


def test_the_server_beside_an_application_with_its_own_cli_gateway_runner_and_bench(
    server_python: Path, tmp_path: Path
) -> None:
    python = server_python
    app = application(tmp_path, python.parents[1])
    env = {**os.environ, "PYTHONPATH": str(app)}
    env.pop("DATABASE_URL", None)
    ran = run(python, "shop.py", cwd=app, env=env)
    assert ran.stdout.split() == ["shop-cli", "shop-gateway", "shop-runner", "shop-bench", "0.1.0"]

    script = python.parent / "praxiom-progress"
    helped = run(script, "--help", cwd=app, env=env)
    for command in ("migrate", "runner", "gateway", "token", "spawn", "watch"):
        assert command in helped.stdout
    assert run(script, "--version", cwd=app, env=env).stdout.strip() == "praxiom-progress 0.1.0"
    tokens = run(script, "token", "list", "--help", cwd=app, env=env)
    assert "--workspace" in tokens.stdout
    assert not {"pytest", "ruff", "mypy", "selenium", "schemathesis"} & installed(python)


class BusyOnce:
    """A front for the gateway that answers the first request 503 with `Retry-After: 1`
    and passes every later one through (streams included), noting when each arrived."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.arrivals: list[tuple[float, str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append((time.monotonic(), request.method, request.path))
        if len(self.arrivals) == 1:
            body = {"error": {"code": "UNAVAILABLE", "message": "Busy"}}
            return web.json_response(body, status=503, headers={"Retry-After": "1"})
        passed = {
            k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
        }
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=passed,
                data=await request.read(),
            ) as upstream,
        ):
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response


@pytest.fixture
async def busy_front(live_gateway: LiveGateway) -> AsyncIterator[BusyOnce]:
    front = BusyOnce(live_gateway.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", front.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    front.url = f"http://127.0.0.1:{port}"
    yield front
    await runner.cleanup()


def readme_client_script() -> str:
    """The README's client example (the first Python block of its client section)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## The client (Python)")
    block = re.search(r"^```python\n(.*?)^```", readme[start:], re.M | re.S)
    assert block is not None
    return block[1]


def test_an_application_of_the_public_api_passes_mypy_strict_against_the_installed_wheels(
    server_python: Path, tmp_path: Path
) -> None:
    """`py.typed` as shipped: the README's integration blocks and `tests/app`, checked with
    the application's own mypy.ini against the environment the wheels were installed in."""
    write_application(tmp_path)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--python-executable", server_python,
         "acme", "shop"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 8 source files" in checked.stdout


def test_the_readme_client_script_passes_mypy_strict_against_the_installed_client(
    client_python: Path, tmp_path: Path
) -> None:
    """The client's types (py.typed, the payload TypedDicts) as an application sees them:
    mypy --strict reads the client from the client-only environment."""
    script = tmp_path / "follow.py"
    script.write_text(readme_client_script())
    checked = run(
        sys.executable, "-m", "mypy", "--strict", "--no-incremental",
        "--python-executable", client_python, script, cwd=tmp_path,
    )  # fmt: skip
    assert "Success" in checked.stdout


@pytest.fixture(scope="module")
def client_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("client") / "venv", wheels["praxiom_client"])


async def test_the_client_alone_waits_out_a_503_and_follows_a_task_to_completion(
    client_python: Path,
    busy_front: BusyOnce,
    member: IssuedToken,
    runners: RunnerHarness,
    tmp_path: Path,
) -> None:
    assert installed(client_python) - PIP_TOOLS <= AIOHTTP_AND_ITS_DEPENDENCIES | {"praxiom-client"}
    script = tmp_path / "follow.py"
    script.write_text(readme_client_script())
    runners.start(builtin_registry())
    env = {**os.environ, "PRAXIOM_URL": busy_front.url, "PRAXIOM_TOKEN": member.token}
    process = await asyncio.create_subprocess_exec(
        client_python, script, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    *progress, result = out.decode().splitlines()

    (first, _, _), (second, method, path), *_ = busy_front.arrivals
    assert (method, path) == ("POST", "/api/tasks/spawn")  # the spawn, tried again...
    assert second - first >= 1.0  # ...no sooner than Retry-After said
    seen = [line.split() for line in progress]
    versions = [int(version) for version, _, _ in seen]
    assert versions == sorted(set(versions)) and len(versions) >= 3
    assert seen[-1][1:] == ["completed", "100"]
    assert result == "result: ['document_ids', 'summary']", result
