"""The `praxiom-progress` console script as a real subprocess against a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

from tests.conftest import SCHEMA_TABLES

REPO = Path(__file__).resolve().parents[2]


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.update({"DATABASE_URL": database_url, "PYTHONPATH": str(REPO), "LOG_LEVEL": "INFO"})
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "praxiom_progress.cli.main", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line on stderr, with no traceback around it."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def query(database_url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def token_row(database_url: str, token: str) -> tuple[Any, ...] | None:
    rows = query(
        database_url,
        "SELECT user_id, expires_at, revoked_at FROM api_tokens WHERE token_hash = %s",
        (hashlib.sha256(token.encode()).digest(),),
    )
    return rows[0] if rows else None


def create_token(database_url: str, workspace: str, user: str) -> str:
    result = cli(database_url, "token", "create", "--workspace", workspace, "--user", user)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_applies_the_schema_and_can_run_again(scratch_database_url: str) -> None:
    def tables() -> set[str]:
        rows = query(
            scratch_database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        return {name for (name,) in rows}

    assert tables() == set()
    for _ in range(2):
        result = cli(scratch_database_url, "migrate")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["schema applied"]
        assert "Traceback" not in result.stderr
        assert tables() == set(SCHEMA_TABLES)
    triggers = query(
        scratch_database_url,
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'background_tasks_bump_version'",
    )
    assert triggers == [(1,)]


@pytest.fixture
def missing_database(database_url: str) -> Iterator[tuple[str, str]]:
    """A database name the server does not have yet, and an admin URL; dropped afterwards."""
    name = f"praxiom_cli_{uuid.uuid4().hex[:12]}"
    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    yield name, admin_url
    for leftover in (name, f"{name}-x", f"{name}%2Dx"):
        query(admin_url, f'DROP DATABASE IF EXISTS "{leftover}" WITH (FORCE)')


def database_exists(admin_url: str, name: str) -> bool:
    return query(admin_url, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)) == [(1,)]


def test_migrate_creates_a_missing_database(
    database_url: str, missing_database: tuple[str, str]
) -> None:
    name, admin_url = missing_database
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    assert not database_exists(admin_url, name)

    first = cli(url, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"database {name} created", "schema applied"]
    assert database_exists(admin_url, name)

    second = cli(url, "migrate")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["schema applied"]


def test_migrate_with_a_keyword_value_dsn(scratch_database_url: str) -> None:
    dsn = " ".join(f"{key}={value}" for key, value in parse_dsn(scratch_database_url).items())
    assert "=" in dsn and "://" not in dsn
    result = cli(dsn, "migrate")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "schema applied"


def test_migrate_creates_a_percent_encoded_database_name(
    database_url: str, missing_database: tuple[str, str]
) -> None:
    name, admin_url = missing_database
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}%2Dx"))
    result = cli(url, "migrate")
    assert not database_exists(admin_url, f"{name}%2Dx")
    assert result.returncode == 0, result.stderr
    assert database_exists(admin_url, f"{name}-x")


def test_migrate_on_an_unreachable_server_exits_1(database_url: str) -> None:
    started = time.monotonic()
    result = cli("postgresql://postgres@127.0.0.1:1/praxiom", "migrate")
    assert result.returncode == 1
    assert one_error_line(result).startswith("error: PostgreSQL unavailable")
    assert result.stdout == ""
    assert time.monotonic() - started < 10


def test_token_create_without_the_schema_says_to_migrate(scratch_database_url: str) -> None:
    result = cli(scratch_database_url, "token", "create", "--workspace", "acme", "--user", "ann")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "praxiom-progress migrate" in line
    assert result.stdout == ""


# -- token create -----------------------------------------------------------------------------


def test_token_create_prints_the_token_alone_on_its_last_line(clean_database: str) -> None:
    result = cli(clean_database, "token", "create", "--workspace", "acme", "--user", "ann")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    token = result.stdout.splitlines()[-1]
    assert token.startswith("pxp_") and " " not in token and len(token) > 30
    row = token_row(clean_database, token)
    assert row is not None
    (user_id,) = query(clean_database, "SELECT id FROM users WHERE name = 'ann'")[0]
    assert row == (user_id, None, None)
    members = query(
        clean_database,
        "SELECT w.name, u.name FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id"
        " JOIN users u ON u.id = m.user_id",
    )
    assert members == [("acme", "ann")]


def test_token_create_json(clean_database: str) -> None:
    result = cli(
        clean_database, "token", "create", "--workspace", "acme", "--user", "ann", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    issued = json.loads(result.stdout)
    assert set(issued) == {"token", "user_id", "workspace_id", "expires_at"}
    assert issued["token"].startswith("pxp_")
    assert issued["expires_at"] is None
    # psycopg2 (without register_uuid) returns uuid columns as their canonical text.
    user_id, workspace_id = str(UUID(issued["user_id"])), str(UUID(issued["workspace_id"]))
    assert query(clean_database, "SELECT id FROM workspaces WHERE name = 'acme'") == [
        (workspace_id,)
    ]
    assert token_row(clean_database, issued["token"]) == (user_id, None, None)


def test_token_create_json_with_expiry_and_reuse(clean_database: str) -> None:
    first = json.loads(
        cli(
            clean_database, "token", "create", "--workspace", "acme", "--user", "ann", "--json"
        ).stdout
    )
    before = datetime.now(UTC)
    result = cli(
        clean_database,
        "token",
        "create",
        "--workspace",
        " acme ",
        "--user",
        "ann",
        "--expires-in",
        "3600",
        "--json",
    )
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    issued = json.loads(result.stdout)
    expires_at = datetime.fromisoformat(issued["expires_at"])
    assert expires_at.utcoffset() == timedelta(0)
    hour, slack = timedelta(hours=1), timedelta(seconds=5)
    assert before + hour - slack <= expires_at <= after + hour + slack
    # The same names (the CLI strips blanks) reuse the same workspace and user.
    assert (issued["workspace_id"], issued["user_id"]) == (first["workspace_id"], first["user_id"])
    assert issued["token"] != first["token"]
    row = token_row(clean_database, issued["token"])
    assert row is not None and row[1] == expires_at
    assert query(clean_database, "SELECT count(*) FROM workspaces") == [(1,)]


# -- token revoke -----------------------------------------------------------------------------


def test_token_revoke(clean_database: str) -> None:
    token = create_token(clean_database, "acme", "ann")
    result = cli(clean_database, "token", "revoke", token)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "token revoked"
    row = token_row(clean_database, token)
    assert row is not None and row[2] is not None


def test_token_revoke_unknown_exits_1(clean_database: str) -> None:
    result = cli(clean_database, "token", "revoke", "pxp_no-such-token")
    assert result.returncode == 1
    assert one_error_line(result) == "error: no such token"
    assert result.stdout == ""


# -- member remove ----------------------------------------------------------------------------


def test_member_remove(clean_database: str) -> None:
    create_token(clean_database, "acme", "ann")
    removed = cli(clean_database, "member", "remove", "--workspace", "acme", "--user", "ann")
    assert removed.returncode == 0, removed.stderr
    assert query(clean_database, "SELECT count(*) FROM workspace_members") == [(0,)]
    assert query(clean_database, "SELECT count(*) FROM users WHERE name = 'ann'") == [(1,)]

    again = cli(clean_database, "member", "remove", "--workspace", "acme", "--user", "ann")
    assert again.returncode == 1
    line = one_error_line(again)
    assert "ann" in line and "acme" in line
    assert again.stdout == ""


# -- bad arguments and settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["token", "create", "--workspace", "acme"], "--user"),
        (["token", "create", "--workspace", "acme", "--user", "ann", "--expires-in", "abc"], "abc"),
    ],
)
def test_bad_arguments_exit_2(clean_database: str, args: list[str], mentions: str) -> None:
    result = cli(clean_database, *args)
    assert result.returncode == 2
    assert mentions in one_error_line(result)
    assert result.stdout == ""
    assert query(clean_database, "SELECT count(*) FROM workspaces") == [(0,)]


def test_bad_setting_exits_2_naming_the_variable(clean_database: str) -> None:
    result = cli(
        clean_database,
        "token",
        "create",
        "--workspace",
        "acme",
        "--user",
        "ann",
        SSE_POLL_INTERVAL="abc",
    )
    assert result.returncode == 2
    assert "SSE_POLL_INTERVAL" in one_error_line(result)
    assert query(clean_database, "SELECT count(*) FROM workspaces") == [(0,)]
