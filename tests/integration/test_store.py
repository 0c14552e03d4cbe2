"""The schema and the shared stores against a real PostgreSQL: constraints, the version
trigger, task inserts and cancels with their NOTIFYs, accounts and tokens, and the errors
a missing server or a missing schema turns into."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg2
import psycopg2.errors
import pytest

from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Database, apply_schema, listen
from praxiom_progress.taskstate.errors import NotFound, SchemaMissing, StoreError, StoreUnavailable
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import TaskPayloadSchema, task_payload
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import CANCELLED_MESSAGE, TaskAlreadyFinished, TaskStore
from praxiom_progress.taskstate.tokens import TOKEN_PREFIX
from tests.conftest import SCHEMA_TABLES

# -- helpers ----------------------------------------------------------------------------------


async def make_running(db: Database, task_id: UUID) -> dict[str, Any]:
    """Claim a task by hand, as a runner would, half way through its work."""
    row = await db.fetch_one(
        """
        UPDATE background_tasks
           SET status = 'running', runner_id = 'test-runner', claim_token = gen_random_uuid(),
               started_at = now(), heartbeat_at = now(), timeout_s = 10,
               phase = 'research_plan', progress_pct = 50, message = 'Planning'
         WHERE id = %(id)s
        RETURNING *
        """,
        {"id": task_id},
    )
    assert row is not None
    return row


async def row_count(db: Database, table: str) -> int:
    row = await db.fetch_one(f"SELECT count(*) AS n FROM {table}")
    assert row is not None
    return row["n"]


async def next_notify(queue: Any, timeout_s: float = 2.0) -> Any:
    return await asyncio.wait_for(queue.get(), timeout_s)


# -- schema -----------------------------------------------------------------------------------


async def test_apply_schema_again_is_idempotent_and_keeps_data(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})

    await apply_schema(db)
    await apply_schema(db)

    for table in SCHEMA_TABLES:
        # No service token; the catalogue holds the four built-in types (tests/conftest.py).
        expected = {"api_token_workspaces": 0, "task_types": 4}.get(table, 1)
        assert await row_count(db, table) == expected, table
    kept = await task_store.get_task(row.id)
    assert kept is not None and kept.version == 1
    triggers = await db.fetch_all(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'background_tasks'::regclass"
        " AND NOT tgisinternal"
    )
    assert [t["tgname"] for t in triggers] == ["background_tasks_bump_version"]


async def test_concurrent_apply_schema_calls_both_succeed(db: Database) -> None:
    results = await asyncio.gather(apply_schema(db), apply_schema(db), return_exceptions=True)
    assert results == [None, None]


async def test_concurrent_apply_schema_on_an_empty_database(scratch_database_url: str) -> None:
    fresh = await Database.connect(Settings(database_url=scratch_database_url), maxsize=4)
    try:
        results = await asyncio.gather(
            *(apply_schema(fresh) for _ in range(4)), return_exceptions=True
        )
        assert results == [None] * 4
        rows = await fresh.fetch_all(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        assert {r["tablename"] for r in rows} == set(SCHEMA_TABLES)
    finally:
        await fresh.close()


# -- CHECK constraints ------------------------------------------------------------------------

INSERT = (
    "INSERT INTO background_tasks (workspace_id, task_type, {columns})"
    " VALUES (%(ws)s, 'research', {values})"
)
BAD_ROWS = {
    "bad status": ("status", "'paused'"),
    "progress_pct 101": ("progress_pct", "101"),
    "progress_pct -1": ("progress_pct", "-1"),
    "params a JSON array": ("params", "'[1, 2]'::jsonb"),
    "params a JSON string": ("params", "'\"x\"'::jsonb"),
    "result_data a JSON array": ("result_data", "'[]'::jsonb"),
    "failed with empty error": ("status, completed_at, error", "'failed', now(), ''"),
    "failed with null error": ("status, completed_at", "'failed', now()"),
    "completed without completed_at": ("status", "'completed'"),
    "cancelled without completed_at": ("status", "'cancelled'"),
    "pending with completed_at": ("completed_at", "now()"),
    "running without claim_token": (
        "status, runner_id, started_at, timeout_s",
        "'running', 'r1', now(), 10",
    ),
    "running without runner_id": (
        "status, claim_token, started_at, timeout_s",
        "'running', gen_random_uuid(), now(), 10",
    ),
    "timeout_s zero": ("timeout_s", "0"),
    "version zero": ("version", "0"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
async def test_check_constraints_reject_bad_rows(
    db: Database, workspace_id: UUID, case: str
) -> None:
    columns, values = BAD_ROWS[case]
    with pytest.raises(psycopg2.errors.CheckViolation):
        await db.fetch_all(INSERT.format(columns=columns, values=values), {"ws": workspace_id})
    assert await row_count(db, "background_tasks") == 0


async def test_check_constraints_accept_good_rows(db: Database, workspace_id: UUID) -> None:
    """The same columns with sound values go in, so the rejections above are the checks'."""
    good = [
        ("progress_pct", "100"),
        ("progress_pct", "0"),
        ("status, completed_at, error", "'failed', now(), 'boom'"),
        ("status, completed_at", "'completed', now()"),
        (
            "status, runner_id, claim_token, started_at, timeout_s",
            "'running', 'r1', gen_random_uuid(), now(), 10",
        ),
    ]
    for columns, values in good:
        await db.fetch_all(INSERT.format(columns=columns, values=values), {"ws": workspace_id})
    assert await row_count(db, "background_tasks") == len(good)


async def test_check_constraint_rejects_a_bad_update(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    with pytest.raises(psycopg2.errors.CheckViolation):
        await db.fetch_all(
            "UPDATE background_tasks SET status = 'completed' WHERE id = %(id)s", {"id": row.id}
        )
    after = await task_store.get_task(row.id)
    assert after is not None
    assert (after.status, after.version) == ("pending", 1)


async def test_task_type_and_names_are_checked(db: Database, workspace_id: UUID) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation):
        await db.fetch_all(
            "INSERT INTO background_tasks (workspace_id, task_type) VALUES (%(ws)s, 'Bad Type')",
            {"ws": workspace_id},
        )
    with pytest.raises(psycopg2.errors.CheckViolation):
        await db.fetch_all("INSERT INTO workspaces (name) VALUES ('')")
    with pytest.raises(psycopg2.errors.CheckViolation):
        await db.fetch_all(
            "INSERT INTO api_tokens (token_hash, user_id)"
            " SELECT 'short'::bytea, id FROM users LIMIT 1"
        )


# -- the version trigger ----------------------------------------------------------------------


async def test_every_update_bumps_version_by_one_and_moves_updated_at(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    task = {"id": row.id}
    statements = [
        "UPDATE background_tasks SET message = 'one' WHERE id = %(id)s",
        # A statement that changes nothing still counts as a write.
        "UPDATE background_tasks SET phase = phase WHERE id = %(id)s",
        # Writers cannot set the version or updated_at themselves.
        "UPDATE background_tasks SET version = 1000, message = 'two' WHERE id = %(id)s",
        "UPDATE background_tasks SET version = 1 WHERE id = %(id)s",
        "UPDATE background_tasks SET updated_at = now() - interval '1 day' WHERE id = %(id)s",
        "UPDATE background_tasks SET updated_at = now() + interval '1 day' WHERE id = %(id)s",
        "UPDATE background_tasks SET progress_pct = progress_pct + 1, version = version + 5"
        " WHERE id = %(id)s",
    ]
    version, updated_at = row.version, row.updated_at
    assert version == 1
    for statement in statements:
        await asyncio.sleep(0.002)
        after = await db.fetch_one(statement + " RETURNING version, updated_at", task)
        assert after is not None
        assert after["version"] == version + 1, statement
        assert after["updated_at"] > updated_at, statement
        assert after["updated_at"] <= datetime.now(UTC) + timedelta(seconds=5), statement
        version, updated_at = after["version"], after["updated_at"]
    stored = await task_store.get_task(row.id)
    assert stored is not None and stored.version == 1 + len(statements)


async def test_a_multi_row_update_bumps_each_row_once(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    ids = [
        (await task_store.insert_task(workspace_id=workspace_id, task_type="t", params={})).id
        for _ in range(3)
    ]
    await db.fetch_all(
        "UPDATE background_tasks SET message = 'bulk' WHERE id = %(id)s", {"id": ids[0]}
    )
    rows = await db.fetch_all("UPDATE background_tasks SET message = 'all' RETURNING id, version")
    versions = {r["id"]: r["version"] for r in rows}
    assert versions == {ids[0]: 3, ids[1]: 2, ids[2]: 2}


# -- TaskStore.insert_task --------------------------------------------------------------------


async def test_insert_task_makes_a_pending_row_and_notifies(
    settings: Settings, task_store: TaskStore, workspace_id: UUID
) -> None:
    params = {"topic": "café", "depth": 3, "nested": {"list": [1, 2]}}
    async with listen(settings, [TASK_PENDING_NOTIFY], name="t") as queue:
        row = await task_store.insert_task(
            workspace_id=workspace_id, task_type="validation_kit", params=params
        )
        notify = await next_notify(queue)
    assert notify.channel == TASK_PENDING_NOTIFY
    assert notify.payload == str(row.id)

    assert isinstance(row.id, UUID)
    assert row.workspace_id == workspace_id
    assert row.task_type == "validation_kit"
    assert row.status == "pending"
    assert row.phase == "pending"
    assert row.progress_pct == 0
    assert row.message == "Queued"
    assert row.version == 1
    assert row.result_data == {}
    assert row.params == params
    for column in ("error", "started_at", "completed_at", "heartbeat_at", "runner_id"):
        assert getattr(row, column) is None, column
    assert row.claim_token is None

    stored = await task_store.get_task(row.id)
    assert stored is not None
    assert stored.params == params and isinstance(stored.params, dict)
    kind = await task_store.db.fetch_one(
        "SELECT jsonb_typeof(params) AS t, params->>'topic' AS topic"
        " FROM background_tasks WHERE id = %(id)s",
        {"id": row.id},
    )
    assert kind == {"t": "object", "topic": "café"}


async def test_insert_task_records_who_spawned_it(
    task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(
        workspace_id=workspace_id, task_type="research", params={}, spawned_by="service:billing"
    )
    assert row.spawned_by == "service:billing" and row.attempt == 0
    stored = await task_store.get_task(row.id)
    assert stored is not None and stored.spawned_by == "service:billing"
    unnamed = await task_store.insert_task(workspace_id=workspace_id, task_type="t", params={})
    assert unnamed.spawned_by is None


async def test_insert_task_for_an_unknown_workspace_fails(task_store: TaskStore) -> None:
    with pytest.raises(NotFound):
        await task_store.insert_task(workspace_id=uuid.uuid4(), task_type="research", params={})


async def test_get_task_of_an_unknown_id_is_none(task_store: TaskStore) -> None:
    assert await task_store.get_task(uuid.uuid4()) is None


# -- TaskStore.cancel_task --------------------------------------------------------------------


async def test_cancel_a_pending_task(
    settings: Settings, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    async with listen(settings, [TASK_CANCELLED_NOTIFY], name="t") as queue:
        cancelled = await task_store.cancel_task(row.id)
        notify = await next_notify(queue)
    assert (notify.channel, notify.payload) == (TASK_CANCELLED_NOTIFY, str(row.id))

    assert cancelled.status == "cancelled"
    assert cancelled.completed_at is not None
    assert cancelled.completed_at >= row.created_at
    assert cancelled.error is None
    assert cancelled.message == CANCELLED_MESSAGE == "Task cancelled"
    assert (cancelled.phase, cancelled.progress_pct) == ("pending", 0)
    assert cancelled.version == row.version + 1
    stored = await task_store.get_task(row.id)
    assert stored is not None
    assert (stored.status, stored.version) == ("cancelled", cancelled.version)


async def test_cancel_a_running_task_keeps_phase_and_pct(
    settings: Settings, db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    running = await make_running(db, row.id)
    assert running["version"] == 2
    async with listen(settings, [TASK_CANCELLED_NOTIFY], name="t") as queue:
        cancelled = await task_store.cancel_task(row.id)
        notify = await next_notify(queue)
    assert notify.payload == str(row.id)

    assert cancelled.status == "cancelled"
    assert cancelled.completed_at is not None
    assert cancelled.error is None
    assert cancelled.message == "Task cancelled"
    assert (cancelled.phase, cancelled.progress_pct) == ("research_plan", 50)
    assert cancelled.started_at == running["started_at"]
    assert cancelled.version == running["version"] + 1


async def test_cancel_with_a_custom_message(task_store: TaskStore, workspace_id: UUID) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    cancelled = await task_store.cancel_task(row.id, "Stopped by ann")
    assert (cancelled.status, cancelled.message) == ("cancelled", "Stopped by ann")


@pytest.mark.parametrize(
    ("status", "extra"),
    [
        ("completed", "completed_at = now()"),
        ("failed", "completed_at = now(), error = 'boom'"),
        ("cancelled", "completed_at = now()"),
    ],
)
async def test_cancelling_a_finished_task_raises_and_changes_nothing(
    settings: Settings,
    db: Database,
    task_store: TaskStore,
    workspace_id: UUID,
    status: str,
    extra: str,
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    finished = await db.fetch_one(
        f"UPDATE background_tasks SET status = %(status)s, {extra},"
        " phase = 'done', progress_pct = 100, message = 'Finished'"
        " WHERE id = %(id)s RETURNING *",
        {"id": row.id, "status": status},
    )
    assert finished is not None

    async with listen(settings, [TASK_CANCELLED_NOTIFY], name="t") as queue:
        with pytest.raises(TaskAlreadyFinished) as caught:
            await task_store.cancel_task(row.id)
        await asyncio.sleep(0.2)
        assert queue.empty(), "a refused cancel must not notify runners"

    assert caught.value.task.id == row.id
    assert caught.value.task.status == status
    assert caught.value.task.version == finished["version"]
    assert isinstance(caught.value, StoreError)
    stored = await task_store.get_task(row.id)
    assert stored == Task.from_row(finished)


async def test_cancelling_twice_raises_the_second_time(
    task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    first = await task_store.cancel_task(row.id)
    with pytest.raises(TaskAlreadyFinished) as caught:
        await task_store.cancel_task(row.id, "again")
    assert caught.value.task.version == first.version
    assert caught.value.task.message == "Task cancelled"
    assert caught.value.task.completed_at == first.completed_at


async def test_cancelling_an_unknown_task_raises_not_found(task_store: TaskStore) -> None:
    with pytest.raises(NotFound):
        await task_store.cancel_task(uuid.uuid4())


async def test_concurrent_cancels_exactly_one_wins(
    task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    results = await asyncio.gather(
        *(task_store.cancel_task(row.id) for _ in range(5)), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, Task)]
    losses = [r for r in results if isinstance(r, TaskAlreadyFinished)]
    assert (len(wins), len(losses)) == (1, 4), results
    assert wins[0].version == 2


# -- payloads ---------------------------------------------------------------------------------


async def test_payload_of_a_fetched_row_validates_with_utc_timestamps(
    db: Database, task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    await make_running(db, row.id)
    await task_store.cancel_task(row.id)
    fetched = await task_store.get_task(row.id)
    assert fetched is not None

    for column in ("created_at", "updated_at", "started_at", "completed_at", "heartbeat_at"):
        assert getattr(fetched, column).utcoffset() == timedelta(0), column

    payload = task_payload(fetched)
    loaded = TaskPayloadSchema().load(payload)
    assert loaded["id"] == row.id
    assert payload["id"] == str(row.id)
    assert payload["status"] == "cancelled"
    assert payload["version"] == 3
    for column in ("started_at", "completed_at", "heartbeat_at"):
        assert payload[column].endswith("Z"), payload[column]
        parsed = datetime.fromisoformat(payload[column].replace("Z", "+00:00"))
        assert abs(parsed - getattr(fetched, column)) < timedelta(milliseconds=1)
    assert "params" not in payload and "claim_token" not in payload


async def test_payload_of_a_pending_row_has_null_timestamps(
    task_store: TaskStore, workspace_id: UUID
) -> None:
    row = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    payload = task_payload(row)
    TaskPayloadSchema().load(payload)
    assert payload["started_at"] is None and payload["completed_at"] is None
    assert (payload["status"], payload["phase"], payload["progress_pct"]) == (
        "pending",
        "pending",
        0,
    )


# -- AccountStore -----------------------------------------------------------------------------


async def test_create_token_creates_workspace_user_and_membership(db: Database) -> None:
    accounts = AccountStore(db)
    issued = await accounts.create_token(workspace="acme", user="ann")

    assert issued.token.startswith(TOKEN_PREFIX) and TOKEN_PREFIX == "pxp_"
    assert isinstance(issued.workspace_id, UUID) and isinstance(issued.user_id, UUID)
    assert issued.expires_at is None
    ws = await db.fetch_all("SELECT id, name FROM workspaces")
    users = await db.fetch_all("SELECT id, name FROM users")
    members = await db.fetch_all("SELECT workspace_id, user_id FROM workspace_members")
    assert ws == [{"id": issued.workspace_id, "name": "acme"}]
    assert users == [{"id": issued.user_id, "name": "ann"}]
    assert members == [{"workspace_id": issued.workspace_id, "user_id": issued.user_id}]


async def test_create_token_reuses_existing_rows(db: Database) -> None:
    accounts = AccountStore(db)
    first = await accounts.create_token(workspace="acme", user="ann")
    second = await accounts.create_token(workspace="acme", user="ann")
    other_user = await accounts.create_token(workspace="acme", user="bob")
    other_ws = await accounts.create_token(workspace="globex", user="ann")

    assert (second.workspace_id, second.user_id) == (first.workspace_id, first.user_id)
    assert other_user.workspace_id == first.workspace_id
    assert other_user.user_id != first.user_id
    assert other_ws.user_id == first.user_id
    assert other_ws.workspace_id != first.workspace_id
    assert len({first.token, second.token, other_user.token, other_ws.token}) == 4
    assert await row_count(db, "workspaces") == 2
    assert await row_count(db, "users") == 2
    assert await row_count(db, "workspace_members") == 3
    assert await row_count(db, "api_tokens") == 4


async def test_concurrent_create_token_for_new_names(db: Database) -> None:
    accounts = AccountStore(db)
    results = await asyncio.gather(
        *(accounts.create_token(workspace="initech", user="peter") for _ in range(8)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert len({(r.workspace_id, r.user_id) for r in results}) == 1
    assert await row_count(db, "workspaces") == 1
    assert await row_count(db, "workspace_members") == 1
    assert await row_count(db, "api_tokens") == 8


async def test_only_the_token_hash_is_stored(db: Database) -> None:
    issued = await AccountStore(db).create_token(workspace="acme", user="ann")
    rows = await db.fetch_all("SELECT token_hash, user_id, revoked_at FROM api_tokens")
    assert len(rows) == 1
    assert bytes(rows[0]["token_hash"]) == hashlib.sha256(issued.token.encode()).digest()
    assert rows[0]["user_id"] == issued.user_id
    assert rows[0]["revoked_at"] is None

    secret = issued.token.removeprefix(TOKEN_PREFIX)
    for table in SCHEMA_TABLES:
        leaks = await db.fetch_one(
            f"SELECT count(*) AS n FROM {table} t"
            " WHERE strpos(t::text, %(token)s) > 0 OR strpos(t::text, %(secret)s) > 0",
            {"token": issued.token, "secret": secret},
        )
        assert leaks == {"n": 0}, table
    # The query can find a value when it is there (the hash, in hex).
    found = await db.fetch_one(
        "SELECT count(*) AS n FROM api_tokens t WHERE strpos(t::text, %(hex)s) > 0",
        {"hex": hashlib.sha256(issued.token.encode()).hexdigest()},
    )
    assert found == {"n": 1}


async def test_tokens_are_distinct(db: Database) -> None:
    accounts = AccountStore(db)
    tokens = [(await accounts.create_token(workspace="acme", user="ann")).token for _ in range(5)]
    assert len(set(tokens)) == 5
    assert all(t.startswith("pxp_") and len(t) > 30 for t in tokens)


async def test_expires_in_sets_expires_at(db: Database) -> None:
    before = datetime.now(UTC)
    issued = await AccountStore(db).create_token(workspace="acme", user="ann", expires_in_s=3600)
    after = datetime.now(UTC)
    assert issued.expires_at is not None
    assert issued.expires_at.utcoffset() == timedelta(0)
    slack = timedelta(seconds=2)
    assert before + timedelta(hours=1) - slack <= issued.expires_at
    assert issued.expires_at <= after + timedelta(hours=1) + slack
    stored = await db.fetch_one("SELECT expires_at FROM api_tokens")
    assert stored == {"expires_at": issued.expires_at}


async def test_fractional_expires_in(db: Database) -> None:
    issued = await AccountStore(db).create_token(workspace="acme", user="ann", expires_in_s=90.5)
    row = await db.fetch_one(
        "SELECT extract(epoch FROM expires_at - created_at) AS s FROM api_tokens"
    )
    assert row is not None and abs(float(row["s"]) - 90.5) < 0.01
    assert issued.expires_at is not None


async def test_no_expiry_leaves_expires_at_null(db: Database) -> None:
    issued = await AccountStore(db).create_token(workspace="acme", user="ann", expires_in_s=None)
    assert issued.expires_at is None
    assert await db.fetch_one("SELECT expires_at FROM api_tokens") == {"expires_at": None}


async def test_revoke_token(db: Database) -> None:
    accounts = AccountStore(db)
    issued = await accounts.create_token(workspace="acme", user="ann")
    kept = await accounts.create_token(workspace="acme", user="ann")

    assert await accounts.revoke_token(issued.token) is True
    first = await db.fetch_one(
        "SELECT revoked_at FROM api_tokens WHERE token_hash = %(h)s",
        {"h": hashlib.sha256(issued.token.encode()).digest()},
    )
    assert first is not None and first["revoked_at"] is not None

    await asyncio.sleep(0.01)
    assert await accounts.revoke_token(issued.token) is True
    second = await db.fetch_one(
        "SELECT revoked_at FROM api_tokens WHERE token_hash = %(h)s",
        {"h": hashlib.sha256(issued.token.encode()).digest()},
    )
    assert second == first

    other = await db.fetch_one(
        "SELECT revoked_at FROM api_tokens WHERE token_hash = %(h)s",
        {"h": hashlib.sha256(kept.token.encode()).digest()},
    )
    assert other == {"revoked_at": None}


async def test_revoke_an_unknown_token(db: Database) -> None:
    accounts = AccountStore(db)
    await accounts.create_token(workspace="acme", user="ann")
    assert await accounts.revoke_token("pxp_not-a-real-token") is False
    assert await accounts.revoke_token("") is False
    assert await db.fetch_one("SELECT count(revoked_at) AS n FROM api_tokens") == {"n": 0}


async def test_remove_member(db: Database) -> None:
    accounts = AccountStore(db)
    ann = await accounts.create_token(workspace="acme", user="ann")
    bob = await accounts.create_token(workspace="acme", user="bob")

    assert await accounts.remove_member(workspace="acme", user="ann") is True
    assert await accounts.remove_member(workspace="acme", user="ann") is False

    members = await db.fetch_all("SELECT workspace_id, user_id FROM workspace_members")
    assert members == [{"workspace_id": bob.workspace_id, "user_id": bob.user_id}]
    assert await db.fetch_one("SELECT id FROM users WHERE name = 'ann'") == {"id": ann.user_id}
    assert await db.fetch_one("SELECT id FROM workspaces WHERE name = 'acme'") == {
        "id": ann.workspace_id
    }


async def test_remove_member_of_unknown_names(db: Database) -> None:
    accounts = AccountStore(db)
    await accounts.create_token(workspace="acme", user="ann")
    await accounts.create_token(workspace="globex", user="bob")
    assert await accounts.remove_member(workspace="nowhere", user="ann") is False
    assert await accounts.remove_member(workspace="acme", user="nobody") is False
    # bob exists and globex exists, but bob is not in acme.
    assert await accounts.remove_member(workspace="acme", user="bob") is False
    assert await row_count(db, "workspace_members") == 2


async def test_create_token_after_removal_restores_membership(db: Database) -> None:
    accounts = AccountStore(db)
    first = await accounts.create_token(workspace="acme", user="ann")
    assert await accounts.remove_member(workspace="acme", user="ann") is True
    again = await accounts.create_token(workspace="acme", user="ann")
    assert (again.workspace_id, again.user_id) == (first.workspace_id, first.user_id)
    assert await db.fetch_all("SELECT workspace_id, user_id FROM workspace_members") == [
        {"workspace_id": first.workspace_id, "user_id": first.user_id}
    ]


# -- outages and a missing schema -------------------------------------------------------------


async def test_connect_to_an_unreachable_server_raises_store_unavailable() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/x", database_timeout_s=5.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await Database.connect(settings)
    assert time.monotonic() - started < 3.0
    assert not isinstance(caught.value, psycopg2.Error)
    assert str(caught.value).startswith("PostgreSQL unavailable")


async def test_listen_on_an_unreachable_server_raises_store_unavailable() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/x")
    with pytest.raises(StoreUnavailable):
        async with listen(settings, [TASK_PENDING_NOTIFY], name="t"):
            pass


async def test_queries_without_the_schema_raise_schema_missing(
    scratch_database_url: str,
) -> None:
    bare = await Database.connect(Settings(database_url=scratch_database_url), maxsize=2)
    try:
        with pytest.raises(SchemaMissing) as caught:
            await TaskStore(bare).get_task(uuid.uuid4())
        assert "praxiom-progress migrate" in str(caught.value)
        assert not isinstance(caught.value, psycopg2.Error)
        with pytest.raises(SchemaMissing):
            await AccountStore(bare).create_token(workspace="acme", user="ann")
        with pytest.raises(SchemaMissing):
            await AccountStore(bare).revoke_token("pxp_x")
        # The pool is still usable afterwards, and migrating fixes it.
        await apply_schema(bare)
        assert await TaskStore(bare).get_task(uuid.uuid4()) is None
    finally:
        await bare.close()
