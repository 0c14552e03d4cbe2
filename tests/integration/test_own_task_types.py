"""An application's own task types, end to end, as a new user adds them: a handler package the
project has never seen, in a folder outside the repository, named in RUNNER_TASK_MODULES; the
real runner and gateway processes, with no TASK_TYPES; everything else over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from praxiom_client import TaskPayload, watch_task
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import REPO, bearer, free_port, settings_env

HANDLERS = '''
"""Acme's task types: one of each kind a real application has."""

import time

from marshmallow import Schema, fields, validate

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext


class ExportParams(Schema):
    rows = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    title = fields.String(load_default="Export")


async def export_csv(task: TaskContext) -> dict:
    rows = task.params["rows"]  # an int: the schema loaded it
    for done in range(0, rows + 1, max(1, rows // 4)):
        await task.report_progress("export", done / rows * 100, f"{done} of {rows} rows")
    return {
        "rows": rows,
        "title": task.params["title"],
        "workspace_id": str(task.workspace_id),
        "spawned_by": task.spawned_by,
        "client": task.state["client"],
    }


def render_pdf(task: TaskContext) -> dict:
    for page in range(1, 4):
        time.sleep(0.1)  # blocking code, as a PDF library would be
        task.report_progress("render", page * 100 / 3, f"Page {page} of 3")
    return {"pages": 3}


def spin(task: TaskContext) -> dict:
    while True:  # never yields: only a process can be stopped
        pass


async def flaky(task: TaskContext) -> dict:
    if task.attempt == 1:
        raise ConnectionError("upstream reset the connection")
    return {"attempt": task.attempt}


def register(registry: HandlerRegistry) -> None:
    @registry.on_startup
    def connect(state: dict) -> None:
        state["client"] = "acme-http-session"

    registry.register("export_csv", export_csv, params=ExportParams,
                      description="Exports rows as CSV")
    registry.register("render_pdf", render_pdf)
    registry.register("spin", spin, isolation="process", timeout_s=2)
    registry.register("flaky", flaky, retries=2, retry_backoff_s=0.2)
'''

TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Deployment:
    url: str
    member: IssuedToken
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs)


def _handler_package(root: Path) -> Path:
    package = root / "acme_tasks"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(HANDLERS))
    return root


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "praxiom_progress.cli.main", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def deployment_env(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    outside = _handler_package(tmp_path_factory.mktemp("acme-app"))
    assert REPO not in outside.parents, "the handler package must be outside the repository"
    env = settings_env(settings, RUNNER_TASK_MODULES="acme_tasks")
    env["PYTHONPATH"] = os.pathsep.join([str(outside), str(REPO)])
    env.pop("TASK_TYPES", None)
    return env


@pytest.fixture
async def deployment(
    deployment_env: dict[str, str], db: Database, tmp_path: Path
) -> AsyncIterator[Deployment]:
    port = free_port()
    gateway_env = {**deployment_env, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)}
    logs = [tmp_path / "runner.log", tmp_path / "gateway.log"]
    processes = [
        _start(["runner"], deployment_env, logs[0]),
        _start(["gateway"], gateway_env, logs[1]),
    ]
    member = await AccountStore(db).create_token(workspace="acme", user="ann")
    deployment = Deployment(f"http://127.0.0.1:{port}", member, logs)
    try:
        await _wait_for_catalogue(deployment, {"export_csv", "render_pdf", "spin", "flaky"})
        yield deployment
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def _wait_for_catalogue(deployment: Deployment, names: set[str]) -> None:
    """Until the gateway lists every type as served (the runner wrote the catalogue)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(headers=bearer(deployment.member.token)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{deployment.url}/api/task-types") as response:
                    if response.status == 200:
                        listed = (await response.json())["task_types"]
                        if names <= {t["name"] for t in listed if t["served"]}:
                            return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"the catalogue never listed {names}:\n{deployment.log_text()}")


async def _spawn(
    deployment: Deployment, task_type: str, params: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"task_type": task_type}
    if params is not None:
        body["params"] = params
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{deployment.url}/api/tasks/spawn", json=body, headers=bearer(deployment.member.token)
        ) as response,
    ):
        return response.status, await response.json()


async def _follow(deployment: Deployment, task_id: str) -> list[TaskPayload]:
    seen: list[TaskPayload] = []
    async with asyncio.timeout(30):
        async for payload in watch_task(deployment.url, task_id, deployment.member.token):
            seen.append(payload)
    assert seen and seen[-1]["status"] in TERMINAL, seen
    return seen


async def test_every_kind_of_handler_of_an_unseen_package_runs_over_http(
    deployment: Deployment, db: Database
) -> None:
    spawned = {}
    for task_type, params in (
        ("export_csv", {"rows": 8}),
        ("render_pdf", None),
        ("spin", None),
        ("flaky", None),
    ):
        status, body = await _spawn(deployment, task_type, params)
        assert status == 202, body
        spawned[task_type] = body["id"]
    started = time.monotonic()
    results = dict(
        zip(
            spawned,
            await asyncio.gather(*(_follow(deployment, i) for i in spawned.values())),
            strict=True,
        )
    )

    export = results["export_csv"][-1]
    assert export["status"] == "completed", export
    assert export["result_data"]["rows"] == 8 and export["result_data"]["title"] == "Export"
    assert export["result_data"]["workspace_id"] == str(deployment.member.workspace_id)
    assert export["result_data"]["spawned_by"] == str(deployment.member.user_id)
    assert export["result_data"]["client"] == "acme-http-session"  # the start-up hook's
    assert results["render_pdf"][-1]["status"] == "completed"
    assert results["render_pdf"][-1]["result_data"]["pages"] == 3

    spin = results["spin"][-1]
    assert spin["status"] == "failed" and spin["error"] == "Spin task timed out after 2s", spin
    assert time.monotonic() - started < 4 + 2, "the stuck child was not stopped in time"

    flaky = results["flaky"]
    assert any(p["phase"] == "retrying" for p in flaky), [p["phase"] for p in flaky]
    retrying = next(p for p in flaky if p["phase"] == "retrying")
    assert "attempt 2 of 3" in retrying["message"] and "ConnectionError" in retrying["message"]
    assert flaky[-1]["status"] == "completed" and flaky[-1]["result_data"] == {"attempt": 2}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{deployment.url}/api/tasks/{spawned['flaky']}",
            headers=bearer(deployment.member.token),
        ) as response,
    ):
        record = await response.json()
    assert (record["attempt"], record["max_attempts"]) == (2, 3)


async def test_bad_params_and_unknown_types_are_refused_with_every_field_error(
    deployment: Deployment,
) -> None:
    status, body = await _spawn(deployment, "export_csv", {"rows": "many", "extra": 1})
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_ERROR"
    # `fields` beside `error`, where every 422 of the API has carried it (see the README).
    assert set(body["fields"]) == {"params.rows", "params.extra"}, body

    status, body = await _spawn(deployment, "export_csv", {})
    assert status == 422 and list(body["fields"]) == ["params.rows"], body

    status, body = await _spawn(deployment, "no_such_type")
    assert status == 422, body
    assert body["error"]["code"] == "VALIDATION_ERROR"
    (refusal,) = body["fields"]["task_type"]
    for known in ("export_csv", "render_pdf", "spin", "flaky"):
        assert known in refusal, body
