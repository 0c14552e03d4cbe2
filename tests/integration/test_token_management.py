"""`token list` and `token revoke --id / --user --workspace` as real subprocesses, and the
gateway noting when each token was last used (at most once per interval)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from praxiom_progress.gateway.token_use import TokenUse
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.tokens import SHOWN_LENGTH
from tests.conftest import LiveGateway, bearer, wait_for
from tests.integration.test_cli import cli, one_error_line, query


def issue(database_url: str, *args: str) -> dict[str, Any]:
    result = cli(database_url, "token", "create", *args, "--json")
    assert result.returncode == 0, result.stderr
    issued: dict[str, Any] = json.loads(result.stdout)
    return issued


def listing(database_url: str, *args: str) -> str:
    result = cli(database_url, "token", "list", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def token_id(database_url: str, prefix: str) -> str:
    rows = query(database_url, "SELECT id FROM api_tokens WHERE token_prefix = %s", (prefix,))
    assert len(rows) == 1
    return str(rows[0][0])


def assert_no_secret(output: str, tokens: list[str]) -> None:
    """No token, nor any 8 characters in a row of its secret part, appears in `output`."""
    for token in tokens:
        secret = token[SHOWN_LENGTH:]
        for start in range(len(secret) - 7):
            assert secret[start : start + 8] not in output, (token[:SHOWN_LENGTH], output)


def test_token_list_shows_every_token_and_never_a_secret(clean_database: str) -> None:
    url = clean_database
    ann = issue(url, "--workspace", "alpha", "--user", "ann", "--expires-in", "3600")
    bob = issue(url, "--workspace", "beta", "--user", "bob")
    bob_again = issue(url, "--workspace", "beta", "--user", "bob")
    reader = issue(url, "--service", "audit", "--workspace", "alpha", "--workspace", "beta",
                   "--read-only")  # fmt: skip
    everything = issue(url, "--service", "billing", "--all-workspaces")
    tokens = [t["token"] for t in (ann, bob, bob_again, reader, everything)]
    assert all(len(set(tokens)) == len(tokens) and t.startswith("pxp_") for t in tokens)
    revoked = cli(url, "token", "revoke", bob_again["token"])
    assert revoked.returncode == 0, revoked.stderr

    outputs = {
        "table": listing(url),
        "json": listing(url, "--json"),
        "alpha": listing(url, "--workspace", "alpha"),
        "alpha json": listing(url, "--workspace", "alpha", "--json"),
    }
    for output in outputs.values():
        assert_no_secret(output, tokens)

    table = outputs["table"].splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "ID", "PREFIX", "PRINCIPAL", "WORKSPACES", "CREATED", "EXPIRES", "LAST USED", "REVOKED"
    ]  # fmt: skip
    assert len(table) == 6
    for token in tokens:
        prefix = token[:SHOWN_LENGTH]
        assert sum(prefix in line for line in table) == 1, prefix
        assert token_id(url, prefix) in outputs["table"]
    assert "service audit (read-only)" in outputs["table"]
    assert "(all)" in outputs["table"] and "alpha,beta" in outputs["table"]

    by_prefix = {row["prefix"]: row for row in json.loads(outputs["json"])}
    assert set(by_prefix) == {t[:SHOWN_LENGTH] for t in tokens}
    ann_row = by_prefix[ann["token"][:SHOWN_LENGTH]]
    assert (ann_row["user"], ann_row["service"], ann_row["workspaces"]) == ("ann", None, ["alpha"])
    assert ann_row["expires_at"] is not None and ann_row["revoked_at"] is None
    assert ann_row["last_used_at"] is None  # no gateway has seen it
    assert set(ann_row) == {
        "id", "prefix", "user", "service", "workspaces", "all_workspaces", "read_only",
        "created_at", "expires_at", "last_used_at", "revoked_at",
    }  # fmt: skip
    assert by_prefix[bob_again["token"][:SHOWN_LENGTH]]["revoked_at"] is not None
    audit = by_prefix[reader["token"][:SHOWN_LENGTH]]
    assert (audit["service"], audit["workspaces"], audit["read_only"]) == (
        "audit",
        ["alpha", "beta"],
        True,
    )
    assert by_prefix[everything["token"][:SHOWN_LENGTH]]["all_workspaces"] is True

    # In alpha: ann (a member), audit (granted), billing (every workspace); not bob.
    in_alpha = {row["prefix"] for row in json.loads(outputs["alpha json"])}
    assert in_alpha == {t["token"][:SHOWN_LENGTH] for t in (ann, reader, everything)}
    assert len(outputs["alpha"].splitlines()) == 4


def test_token_list_of_an_unknown_workspace_exits_1(clean_database: str) -> None:
    result = cli(clean_database, "token", "list", "--workspace", "nope")
    assert result.returncode == 1 and result.stdout == ""
    assert one_error_line(result) == "error: no workspace named 'nope'"


def test_token_revoke_by_id(clean_database: str) -> None:
    url = clean_database
    kept = issue(url, "--workspace", "acme", "--user", "ann")["token"]
    gone = issue(url, "--workspace", "acme", "--user", "ann")["token"]
    gone_id = token_id(url, gone[:SHOWN_LENGTH])
    result = cli(url, "token", "revoke", "--id", gone_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"token {gone_id} revoked"
    revoked = dict(query(url, "SELECT token_prefix, revoked_at IS NOT NULL FROM api_tokens"))
    assert revoked == {gone[:SHOWN_LENGTH]: True, kept[:SHOWN_LENGTH]: False}

    unknown = "00000000-0000-4000-8000-000000000000"
    missing = cli(url, "token", "revoke", "--id", unknown)
    assert missing.returncode == 1
    assert one_error_line(missing) == f"error: no token with id {unknown}"


def test_token_revoke_every_token_of_a_member(clean_database: str) -> None:
    url = clean_database
    for _ in range(2):
        issue(url, "--workspace", "acme", "--user", "ann")
    bob = issue(url, "--workspace", "acme", "--user", "bob")["token"]
    result = cli(url, "token", "revoke", "--user", "ann", "--workspace", "acme")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "revoked 2 tokens of ann"
    live = query(url, "SELECT token_prefix FROM api_tokens WHERE revoked_at IS NULL")
    assert live == [(bob[:SHOWN_LENGTH],)]
    again = cli(url, "token", "revoke", "--user", "ann", "--workspace", "acme")
    assert again.stdout.strip() == "revoked 0 tokens of ann"

    stranger = cli(url, "token", "revoke", "--user", "ann", "--workspace", "elsewhere")
    assert stranger.returncode == 1
    assert one_error_line(stranger) == "error: 'ann' is not a member of workspace 'elsewhere'"


def test_token_revoke_takes_exactly_one_form(clean_database: str) -> None:
    some_id = "00000000-0000-4000-8000-000000000000"
    for args, mentions in [
        ([], "one of"),
        (["pxp_x", "--id", some_id], "one of"),
        (["--id", some_id, "--user", "ann", "--workspace", "acme"], "one of"),
        (["--user", "ann"], "--workspace"),
        (["--workspace", "acme"], "--workspace"),
        (["--id", "not-an-id"], "UUID"),
    ]:
        result = cli(clean_database, "token", "revoke", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert mentions in one_error_line(result), (args, result.stderr)


async def test_token_use_is_written_at_most_once_per_interval(db: Database) -> None:
    accounts = AccountStore(db)
    used = await accounts.create_token(workspace="acme", user="ann")
    idle = await accounts.create_token(workspace="acme", user="bob")
    (used_id,) = [t.id for t in await accounts.list_tokens() if t.user == "ann"]
    usage = TokenUse(db, interval_s=60)
    assert await usage.write() == 0  # nothing noted: no statement at all
    usage.note(used_id)
    usage.note(used_id)
    assert await usage.write() == 1
    first = {t.user: t.last_used_at for t in await accounts.list_tokens()}
    assert first["ann"] is not None and first["bob"] is None
    assert abs(first["ann"] - datetime.now(UTC)) < timedelta(minutes=1)

    usage.note(used_id)  # used again within the minute: the row is left alone
    assert await usage.write() == 0
    await db.fetch_one(
        "UPDATE api_tokens SET last_used_at = last_used_at - interval '61 seconds'"
        " WHERE id = %(id)s RETURNING id",
        {"id": used_id},
    )
    usage.note(used_id)  # a minute later it is written again
    assert await usage.write() == 1
    assert idle.token != used.token


async def test_the_gateway_notes_each_valid_token_it_sees(settings: Settings, db: Database) -> None:
    accounts = AccountStore(db)
    used = await accounts.create_token(workspace="acme", user="ann")
    await accounts.create_token(workspace="acme", user="bob")
    gateway = LiveGateway(settings.replace(token_last_used_interval_s=0.1))
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{gateway.url}/api/task-types", headers=bearer(used.token)
            ) as response:
                assert response.status == 200

            async def seen() -> dict[str | None, datetime | None]:
                listed = {t.user: t.last_used_at for t in await accounts.list_tokens()}
                return listed if listed["ann"] is not None else {}

            last_used = await wait_for(seen)
    finally:
        await gateway.stop()
    assert last_used["bob"] is None


async def test_a_stopping_gateway_writes_the_use_it_saw(settings: Settings, db: Database) -> None:
    accounts = AccountStore(db)
    used = await accounts.create_token(workspace="acme", user="ann")
    gateway = LiveGateway(settings)  # the default interval: no periodic write in this test
    await gateway.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gateway.url}/api/task-types", headers=bearer(used.token)) as response,
        ):
            assert response.status == 200
        assert [t.last_used_at for t in await accounts.list_tokens()] == [None]
    finally:
        await gateway.stop()
    (listed,) = await accounts.list_tokens()
    assert listed.last_used_at is not None
