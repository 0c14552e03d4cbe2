"""`praxiom-progress token create --service`: grants, the explicit all-workspaces flag,
read-only; the option combinations that make no sense are one-line usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from gateway.app import create_app
from taskstate.db import Database
from taskstate.settings import Settings
from taskstate.store import TaskStore
from tests.conftest import REPO, bearer
from tests.security.kit import assert_refused, make_scene


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_read_only_service_token_from_the_cli_reads_and_never_writes(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    scene = await make_scene(db, task_store)
    result = cli(
        settings.database_url,
        "token", "create", "--service", "indexer", "--workspace", "acme", "--read-only", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    issued = json.loads(result.stdout)
    assert issued["workspace_ids"] == [str(scene.workspace_id)]
    assert (issued["service"], issued["all_workspaces"], issued["read_only"]) == (
        "indexer",
        False,
        True,
    )
    api = await aiohttp_client(create_app(settings))
    headers = bearer(issued["token"])
    assert (await api.get(f"/api/tasks/{scene.task_id}/status", headers=headers)).status == 200
    resp = await api.post(f"/api/tasks/{scene.task_id}/cancel", headers=headers)
    await assert_refused(resp, 403, "FORBIDDEN", scene.task_id)


async def test_all_workspaces_only_with_the_explicit_flag(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    scene = await make_scene(db, task_store)
    result = cli(settings.database_url, "token", "create", "--service", "ops", "--all-workspaces")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "service ops: all workspaces, read-write"
    token = result.stdout.splitlines()[-1]
    api = await aiohttp_client(create_app(settings))
    resp = await api.post(f"/api/tasks/{scene.task_id}/cancel", headers=bearer(token))
    assert resp.status == 202


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--service", "s"], "--all-workspaces"),  # neither grants nor the flag: no default
        (["--service", "s", "--workspace", "a", "--all-workspaces"], "--all-workspaces"),
        (["--user", "u", "--workspace", "a", "--read-only"], "--service"),
        (["--user", "u", "--workspace", "a", "--all-workspaces"], "--service"),
        (["--user", "u", "--workspace", "a", "--workspace", "b"], "exactly one"),
        (["--user", "u", "--service", "s", "--workspace", "a"], "not allowed with"),
    ],
)
def test_option_combinations_that_make_no_sense_exit_2_with_one_line(
    args: list[str], says: str, database_url: str
) -> None:
    result = cli(database_url, "token", "create", *args)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
