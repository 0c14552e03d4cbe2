"""`praxiom-progress token create --service`: grants, the explicit all-workspaces flag,
read-only; the option combinations that make no sense are one-line usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database, apply_schema
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import REPO, bearer
from tests.security.kit import assert_refused, make_scene


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "praxiom_progress.cli.main", *args],
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


#: The account tables as they were before service tokens (issue 8), to upgrade in place.
BEFORE_SERVICE_TOKENS = """
CREATE TABLE workspaces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE workspace_members (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workspace_id, user_id));
CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz,
    revoked_at timestamptz);
"""


async def test_a_database_from_before_service_tokens_upgrades_in_place(
    scratch_database_url: str,
) -> None:
    """`migrate` on an existing database: the old user tokens keep working, service tokens
    can be issued, and applying the schema again changes nothing."""
    db = await Database.connect(Settings(database_url=scratch_database_url), maxsize=2)
    try:
        await db.execute_script(BEFORE_SERVICE_TOKENS)
        old = await db.fetch_one(
            "WITH w AS (INSERT INTO workspaces (name) VALUES ('acme') RETURNING id), "
            "u AS (INSERT INTO users (name) VALUES ('ann') RETURNING id), "
            "m AS (INSERT INTO workspace_members SELECT w.id, u.id FROM w, u) "
            "INSERT INTO api_tokens (token_hash, user_id) "
            "SELECT %(h)s, u.id FROM u RETURNING user_id",
            {"h": hash_token("pxp_old")},
        )
        assert old is not None
        await apply_schema(db)
        await apply_schema(db)
        principal = await GatewayStore(db).principal(hash_token("pxp_old"))
        assert principal is not None and principal.caller.user_id == old["user_id"]
        issued = await AccountStore(db).create_service_token(service="s", workspaces=["acme"])
        service = await GatewayStore(db).principal(hash_token(issued.token))
        assert service is not None and service.caller.key == "service:s"
        assert service.workspace_ids == issued.workspace_ids and len(issued.workspace_ids) == 1
    finally:
        await db.close()
