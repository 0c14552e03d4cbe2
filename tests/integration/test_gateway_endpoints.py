"""The gateway's JSON endpoints and its auth, through the test client, on real PostgreSQL and Redis.

Covers spawn (and its validation), status, the canonical record, cancel, the
auth matrix of all five endpoints, malformed ids, unknown routes and methods,
and PostgreSQL being unreachable.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp import ClientResponse

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.schemas import TaskRecordSchema
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import (
    PAYLOAD_FIELDS,
    TaskPayloadSchema,
    encode_payload,
    task_payload,
)
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    EndlessTask,
    RunnerHarness,
    bearer,
    builtin_registry,
    spawn,
    wait_for,
    wait_for_status,
)
from tests.security.kit import call, expire

SPAWN = "/api/tasks/spawn"
TERMINAL = {"completed", "failed", "cancelled"}
ISO_UTC_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MAX_PARAMS = 65_536
MIB = 1024 * 1024
#: Words that only a task's own data would put into a response body.
TASK_WORDS = ("validation_kit", "phase", "result_data", "progress_pct", "Queued", "pending")


# -- helpers -----------------------------------------------------------------------------------


async def task_count(db: Database) -> int:
    row = await db.fetch_one("SELECT count(*) AS n FROM background_tasks")
    assert row is not None
    return int(row["n"])


async def error_of(
    resp: ClientResponse, status: int, code: str, *, extra_keys: set[str] | None = None
) -> dict[str, Any]:
    """Assert the response is the JSON error shape with this status and code; return the body."""
    raw = await resp.read()
    assert resp.status == status, raw
    assert resp.content_type == "application/json", (resp.content_type, raw)
    body = json.loads(raw)
    assert set(body) == {"error"} | (extra_keys or set()), body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body


def assert_no_task_bytes(raw: bytes, *secrets: object) -> None:
    """A refusal says nothing about the task: no id, no field name, no field value."""
    text = raw.decode("utf-8")
    for secret in (*map(str, secrets), *TASK_WORDS):
        assert secret not in text, f"{secret!r} leaked in {text!r}"


async def post_spawn(api: Any, body: Any, token: str) -> ClientResponse:
    return await api.post(SPAWN, json=body, headers=bearer(token))


async def post_raw(api: Any, data: Any, token: str) -> ClientResponse:
    headers = {**bearer(token), "Content-Type": "application/json"}
    return await api.post(SPAWN, data=data, headers=headers)


# -- spawn -------------------------------------------------------------------------------------


async def test_spawn_answers_202_with_the_pending_payload_task_id_and_location(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    resp = await post_spawn(
        api, {"task_type": "validation_kit", "params": {"step_seconds": 0}}, member.token
    )
    assert resp.status == 202, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == [*PAYLOAD_FIELDS, "task_id"]
    assert body["task_id"] == body["id"]
    assert resp.headers["Location"] == f"/api/tasks/{body['id']}"
    assert body["status"] == "pending" and body["phase"] == "pending"
    assert body["progress_pct"] == 0 and body["message"] == "Queued"
    assert body["version"] == 1 and body["task_type"] == "validation_kit"
    assert body["error"] is None and body["result_data"] == {}
    assert body["started_at"] is None and body["completed_at"] is None
    TaskPayloadSchema().load({k: body[k] for k in PAYLOAD_FIELDS})

    row = await task_store.get_task(UUID(body["id"]))
    assert row is not None
    assert row.workspace_id == member.workspace_id  # omitted: the one membership
    assert row.params == {"step_seconds": 0}
    assert task_payload(row) == {k: body[k] for k in PAYLOAD_FIELDS}


async def test_spawn_with_an_explicit_workspace_of_the_caller(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    body = {"task_type": "research", "workspace_id": str(member.workspace_id), "params": {}}
    resp = await post_spawn(api, body, member.token)
    assert resp.status == 202, await resp.text()
    row = await task_store.get_task(UUID((await resp.json())["id"]))
    assert row is not None and row.workspace_id == member.workspace_id
    assert row.task_type == "research"


async def test_spawn_records_the_caller_as_spawned_by(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    resp = await post_spawn(api, {"task_type": "research", "params": {}}, member.token)
    assert resp.status == 202, await resp.text()
    row = await task_store.get_task(UUID((await resp.json())["id"]))
    assert row is not None and row.spawned_by == str(member.user_id)


async def test_spawn_without_workspace_id_needs_exactly_one_membership(
    api: Any, member: IssuedToken, db: Database, task_store: TaskStore
) -> None:
    other = await AccountStore(db).create_token(workspace="other", user="ann")
    assert other.user_id == member.user_id and other.workspace_id != member.workspace_id

    resp = await post_spawn(api, {"task_type": "validation_kit"}, member.token)
    body = await error_of(resp, 422, "VALIDATION_ERROR", extra_keys={"fields"})
    assert "workspace_id" in body["fields"]
    assert await task_count(db) == 0

    resp = await post_spawn(
        api, {"task_type": "validation_kit", "workspace_id": str(other.workspace_id)}, other.token
    )
    assert resp.status == 202, await resp.text()
    row = await task_store.get_task(UUID((await resp.json())["id"]))
    assert row is not None and row.workspace_id == other.workspace_id


async def test_spawn_without_workspace_id_and_no_membership_names_workspace_id(
    api: Any, member: IssuedToken, db: Database
) -> None:
    await AccountStore(db).remove_member(workspace="acme", user="ann")
    resp = await post_spawn(api, {"task_type": "validation_kit"}, member.token)
    body = await error_of(resp, 422, "VALIDATION_ERROR", extra_keys={"fields"})
    assert "workspace_id" in body["fields"]
    assert await task_count(db) == 0


@pytest.mark.parametrize("whose", ["someone_elses", "nobodys"])
async def test_spawn_into_a_workspace_the_caller_is_not_in_is_forbidden(
    whose: str, api: Any, member: IssuedToken, db: Database
) -> None:
    if whose == "someone_elses":
        workspace = (await AccountStore(db).create_token(workspace="beta", user="bob")).workspace_id
    else:
        workspace = uuid4()
    body = {"task_type": "validation_kit", "workspace_id": str(workspace)}
    resp = await post_spawn(api, body, member.token)
    await error_of(resp, 403, "FORBIDDEN")
    assert await task_count(db) == 0


async def test_spawn_notify_wakes_an_idle_runner_and_the_task_completes(
    api: Any, member: IssuedToken, task_store: TaskStore, runners: RunnerHarness
) -> None:
    # A 30 s poll interval: only the spawn's NOTIFY can get the task claimed this fast.
    runners.start(builtin_registry(), runner_poll_interval_s=30)
    await asyncio.sleep(0.3)  # the runner is idle, parked on LISTEN
    started = time.monotonic()
    resp = await post_spawn(
        api, {"task_type": "validation_kit", "params": {"step_seconds": 0}}, member.token
    )
    assert resp.status == 202
    task_id = UUID((await resp.json())["id"])
    final = await wait_for_status(task_store, task_id, TERMINAL, timeout_s=5)
    assert time.monotonic() - started < 5
    assert (final.status, final.phase, final.progress_pct) == (
        "completed",
        "complete",
        100,
    )

    status = await (
        await api.get(f"/api/tasks/{task_id}/status", headers=bearer(member.token))
    ).json()
    assert status["status"] == "completed" and status["version"] == final.version


# -- spawn validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"task_type": "no_such_type"}, "task_type", id="unknown-task-type"),
        pytest.param({}, "task_type", id="missing-task-type"),
        pytest.param({"task_type": 7}, "task_type", id="task-type-not-a-string"),
        pytest.param(
            {"task_type": "validation_kit", "colour": "red"}, "colour", id="unknown-field"
        ),
        pytest.param({"task_type": "validation_kit", "params": [1, 2]}, "params", id="params-list"),
        pytest.param({"task_type": "validation_kit", "params": "x"}, "params", id="params-string"),
        pytest.param({"task_type": "validation_kit", "params": None}, "params", id="params-null"),
        pytest.param({"task_type": "validation_kit", "params": 3}, "params", id="params-number"),
        pytest.param(
            {"task_type": "validation_kit", "workspace_id": "acme"}, "workspace_id", id="ws-name"
        ),
        pytest.param(
            {"task_type": "validation_kit", "workspace_id": 42}, "workspace_id", id="ws-number"
        ),
    ],
)
async def test_spawn_refuses_an_invalid_body_naming_the_field(
    body: dict[str, Any], field: str, api: Any, member: IssuedToken, db: Database
) -> None:
    resp = await post_spawn(api, body, member.token)
    error = await error_of(resp, 422, "VALIDATION_ERROR", extra_keys={"fields"})
    assert field in error["fields"], error
    assert await task_count(db) == 0


def params_of_size(size: int, char: str = "x") -> dict[str, str]:
    """`{"s": "xxx…"}` whose compact JSON is exactly `size` bytes of UTF-8."""
    overhead = len(b'{"s":""}')
    width = len(char.encode())
    assert (size - overhead) % width == 0
    params = {"s": char * ((size - overhead) // width)}
    encoded = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) == size
    return params


@pytest.mark.parametrize("char", ["x", "é"], ids=["ascii", "two-byte-utf8"])
async def test_params_of_exactly_64_kib_are_accepted_and_one_more_byte_is_refused(
    char: str, api: Any, member: IssuedToken, db: Database, task_store: TaskStore
) -> None:
    width = len(char.encode())
    resp = await post_spawn(
        api,
        {"task_type": "validation_kit", "params": params_of_size(MAX_PARAMS, char)},
        member.token,
    )
    assert resp.status == 202, await resp.text()
    row = await task_store.get_task(UUID((await resp.json())["id"]))
    assert row is not None and row.params == params_of_size(MAX_PARAMS, char)

    over = params_of_size(MAX_PARAMS + width, char)  # counted in bytes, not characters
    resp = await post_spawn(api, {"task_type": "validation_kit", "params": over}, member.token)
    error = await error_of(resp, 422, "VALIDATION_ERROR", extra_keys={"fields"})
    assert "params" in error["fields"]
    assert await task_count(db) == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"task_type": "validation_kit"', id="truncated"),
        pytest.param(b'{"task_type": "validation_kit", "params": {"a": "\xff"}}', id="bad-utf8"),
        pytest.param(b"\xff\xfe{}", id="bad-utf8-prefix"),
        pytest.param(b'[{"task_type": "validation_kit"}]', id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"validation_kit"', id="string"),
        pytest.param(b'{"task_type": "validation_kit", "params": {"x": NaN}}', id="nan"),
        pytest.param(b'{"task_type": "validation_kit", "params": {"x": Infinity}}', id="inf"),
        pytest.param(b'{"task_type": "validation_kit", "params": {"x": -Infinity}}', id="-inf"),
        pytest.param(
            b'{"task_type": "validation_kit", "params": {"x": 1' + b"0" * 5000 + b"}}",
            id="huge-int",
        ),
    ],
)
async def test_spawn_refuses_a_malformed_body_with_a_4xx(
    data: bytes, api: Any, member: IssuedToken, db: Database
) -> None:
    resp = await post_raw(api, data, member.token)
    assert resp.status in (400, 422), await resp.text()
    body = await error_of(
        resp, resp.status, "VALIDATION_ERROR", extra_keys=None if resp.status == 400 else {"fields"}
    )
    if resp.status == 400:  # no parser text: it would echo the input (a secret, say) back
        assert body["error"]["message"] == "The request body must be a JSON object", body
    assert await task_count(db) == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b'{"task_type": "validation_kit", "params": {"x": 1e400}}',
            id="overflowing-float",
        ),
        pytest.param(
            b'{"task_type": "validation_kit", "params": {"x": "a\\u0000b"}}',
            id="nul-character",
        ),
        pytest.param(
            b'{"task_type": "validation_kit", "params": {"x": "\\ud800"}}',
            id="lone-surrogate",
        ),
        pytest.param(
            b'{"task_type": "validation_kit", "params": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
            id="deeply-nested",
        ),
    ],
)
async def test_spawn_refuses_json_that_postgresql_cannot_store_with_a_4xx(
    data: bytes, api: Any, member: IssuedToken, db: Database
) -> None:
    resp = await post_raw(api, data, member.token)
    assert 400 <= resp.status < 500, (resp.status, await resp.text())
    body = await resp.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert await task_count(db) == 0


async def test_a_body_over_one_mib_gets_413_with_the_error_body(
    api: Any, member: IssuedToken, db: Database
) -> None:
    data = b'{"task_type": "validation_kit", "params": {"s": "' + b"x" * MIB + b'"}}'
    resp = await post_raw(api, data, member.token)
    await error_of(resp, 413, "PAYLOAD_TOO_LARGE")
    assert await task_count(db) == 0


async def test_a_chunked_body_over_one_mib_gets_413_too(
    api: Any, member: IssuedToken, db: Database
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"task_type": "validation_kit", "params": {"s": "'
        for _ in range(20):
            yield b"x" * 65_536
        yield b'"}}'

    resp = await post_raw(api, chunks(), member.token)
    await error_of(resp, 413, "PAYLOAD_TOO_LARGE")
    assert await task_count(db) == 0


# -- status and the canonical record -----------------------------------------------------------


async def test_status_is_the_payload_byte_for_byte(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    resp = await api.get(f"/api/tasks/{task_id}/status", headers=bearer(member.token))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.content_type == "application/json"
    raw = await resp.read()
    row = await task_store.get_task(task_id)
    assert row is not None
    assert raw == encode_payload(task_payload(row)).encode("utf-8")
    payload = json.loads(raw)
    assert list(payload) == list(PAYLOAD_FIELDS)
    assert payload == task_payload(row)
    TaskPayloadSchema().load(payload)


async def test_status_of_a_completed_task_equals_the_last_published_bytes(
    api: Any, member: IssuedToken, task_store: TaskStore, runners: RunnerHarness
) -> None:
    """Same function for /status and the publish: the final bytes on the channel match."""
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    client = connect_redis(runners.redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(progress_channel(task_id))
        runners.start(builtin_registry())
        final = await wait_for_status(task_store, task_id, TERMINAL)
        published: list[bytes] = []
        async with asyncio.timeout(5):
            while not published or json.loads(published[-1])["version"] < final.version:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    published.append(message["data"])
    finally:
        await pubsub.aclose()
        await client.aclose()

    resp = await api.get(f"/api/tasks/{task_id}/status", headers=bearer(member.token))
    raw = await resp.read()
    assert raw == published[-1]
    assert "—".encode() in raw  # the spec's completion message, UTF-8 kept as is
    payload = json.loads(raw)
    assert payload["status"] == "completed" and payload["progress_pct"] == 100
    TaskPayloadSchema().load(payload)


async def test_record_is_the_payload_plus_the_rows_own_fields(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(
        task_store, member.workspace_id, "validation_kit", step_seconds=0, company="Acme"
    )
    resp = await api.get(f"/api/tasks/{task_id}", headers=bearer(member.token))
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    record = await resp.json()
    row = await task_store.get_task(task_id)
    assert row is not None
    assert set(record) == {
        *PAYLOAD_FIELDS,
        *("workspace_id", "params", "created_at", "updated_at", "attempt", "max_attempts"),
    }
    assert {k: record[k] for k in PAYLOAD_FIELDS} == task_payload(row)
    assert (record["attempt"], record["max_attempts"]) == (0, 1)  # not claimed yet
    assert record["workspace_id"] == str(member.workspace_id)
    assert record["params"] == {"step_seconds": 0, "company": "Acme"}
    assert record["version"] == row.version == 1
    for stamp in ("created_at", "updated_at"):
        assert ISO_UTC_MS.match(record[stamp]), record[stamp]
        stamp_of_row = getattr(row, stamp).astimezone(UTC).isoformat(timespec="milliseconds")
        assert record[stamp] == stamp_of_row.replace("+00:00", "Z")
    TaskRecordSchema().load(record)


# -- cancel ------------------------------------------------------------------------------------


async def test_cancel_of_a_pending_task_with_no_runner_answers_202(
    api: Any, member: IssuedToken, task_store: TaskStore, settings: Settings
) -> None:
    """The gateway writes the cancel and publishes nothing (its Redis user may not): streams
    hear of it through the NOTIFY (test_unpublished_writes.py)."""
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    client = connect_redis(settings.redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(progress_channel(task_id))
        confirmed = await pubsub.get_message(timeout=2.0)
        assert confirmed is not None and confirmed["type"] == "subscribe"

        resp = await api.post(f"/api/tasks/{task_id}/cancel", headers=bearer(member.token))
        assert resp.status == 202, await resp.text()
        raw = await resp.read()
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    finally:
        await pubsub.aclose()
        await client.aclose()

    body = json.loads(raw)
    assert list(body) == list(PAYLOAD_FIELDS)
    assert body["status"] == "cancelled" and body["error"] is None
    assert body["completed_at"] is not None and ISO_UTC_MS.match(body["completed_at"])
    assert "cancel" in body["message"].lower()
    assert (body["phase"], body["progress_pct"]) == ("pending", 0)  # last phase and pct kept
    assert body["version"] == 2
    TaskPayloadSchema().load(body)
    assert message is None, "the gateway published"
    row = await task_store.get_task(task_id)
    assert row is not None and task_payload(row) == body


async def test_cancelling_again_is_a_409_conflict_carrying_the_current_payload(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    first = await api.post(f"/api/tasks/{task_id}/cancel", headers=bearer(member.token))
    assert first.status == 202
    resp = await api.post(f"/api/tasks/{task_id}/cancel", headers=bearer(member.token))
    body = await error_of(resp, 409, "CONFLICT", extra_keys={"task"})
    row = await task_store.get_task(task_id)
    assert row is not None and row.version == 2  # the refused cancel wrote nothing
    assert body["task"] == task_payload(row)
    assert body["task"]["status"] == "cancelled"


async def test_concurrent_cancels_cancel_once_and_the_rest_conflict(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    path = f"/api/tasks/{task_id}/cancel"
    responses = await asyncio.gather(
        *(api.post(path, headers=bearer(member.token)) for _ in range(8))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [202] + [409] * 7, statuses
    row = await task_store.get_task(task_id)
    assert row is not None and row.status == "cancelled" and row.version == 2
    for resp in responses:
        body = await resp.json()
        task = body if resp.status == 202 else body["task"]
        assert task == task_payload(row)


async def test_cancelling_a_completed_task_is_a_409(
    api: Any, member: IssuedToken, task_store: TaskStore, runners: RunnerHarness
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(task_store, member.workspace_id, "research", step_seconds=0)
    final = await wait_for_status(task_store, task_id, {"completed"})
    resp = await api.post(f"/api/tasks/{task_id}/cancel", headers=bearer(member.token))
    body = await error_of(resp, 409, "CONFLICT", extra_keys={"task"})
    assert body["task"] == task_payload(final)
    row = await task_store.get_task(task_id)
    assert row is not None and row.status == "completed" and row.version == final.version


async def test_cancelling_a_running_task_stops_its_handler_within_a_second(
    api: Any, member: IssuedToken, task_store: TaskStore, runners: RunnerHarness
) -> None:
    endless = EndlessTask()
    # A long heartbeat interval: only the cancel's NOTIFY can stop the handler this fast.
    runners.start(endless.registry(), runner_heartbeat_interval_s=30)
    task_id = await spawn(task_store, member.workspace_id, endless.task_type)

    async def working() -> bool:
        row = await task_store.get_task(task_id)
        return row is not None and row.progress_pct == 40

    await wait_for(working)
    cancelled_at = time.monotonic()
    resp = await api.post(f"/api/tasks/{task_id}/cancel", headers=bearer(member.token))
    assert resp.status == 202
    body = await resp.json()
    assert body["status"] == "cancelled" and (body["phase"], body["progress_pct"]) == (
        "running",
        40,
    )
    await wait_for(lambda: asyncio.sleep(0, result=endless.stopped_at), timeout_s=1.0)
    assert endless.stopped_at is not None and endless.stopped_at - cancelled_at < 1.0
    await asyncio.sleep(0.5)
    row = await task_store.get_task(task_id)
    assert row is not None and row.status == "cancelled"
    assert row.version == body["version"] and row.error is None


# -- the auth matrix ---------------------------------------------------------------------------

ENDPOINTS = ["spawn", "progress", "status", "record", "cancel"]
SUCCESS = {"spawn": 202, "progress": 200, "status": 200, "record": 200, "cancel": 202}


async def assert_allowed(resp: ClientResponse, endpoint: str) -> None:
    assert resp.status == SUCCESS[endpoint], (resp.status, await resp.text())
    if endpoint == "progress":
        assert resp.content_type == "text/event-stream"
        resp.close()  # the stream stays open: read no further
    else:
        body = await resp.json()
        assert body["id"]


async def assert_refused(
    resp: ClientResponse,
    status: int,
    code: str,
    task_id: UUID,
    workspace_id: UUID,
) -> None:
    raw = await resp.read()
    await error_of(resp, status, code)
    assert_no_task_bytes(raw, task_id, workspace_id)
    if status == 401:
        assert resp.headers.get("WWW-Authenticate") == "Bearer"


async def assert_untouched(task_store: TaskStore, task_id: UUID, db: Database) -> None:
    row = await task_store.get_task(task_id)
    assert row is not None and row.status == "pending" and row.version == 1
    assert await task_count(db) == 1  # no spawn went through


CREDENTIALS = [
    "none",
    "basic",
    "empty-bearer",
    "unknown-bearer",
    "expired",
    "revoked",
    "bad-cookie",
]


async def credentials_for(case: str, db: Database) -> dict[str, str]:
    accounts = AccountStore(db)
    if case == "none":
        return {}
    if case == "basic":
        return {"Authorization": "Basic xyz"}
    if case == "empty-bearer":
        return {"Authorization": "Bearer "}
    if case == "unknown-bearer":
        return bearer("pxp_" + "A" * 43)
    if case == "bad-cookie":
        return {"Cookie": "praxiom_session=pxp_not-a-real-token"}
    issued = await accounts.create_token(workspace="acme", user="ann")  # a member's token ...
    if case == "expired":
        await expire(db, issued.token)
    else:
        assert await accounts.revoke_token(issued.token)
    return bearer(issued.token)  # ... that no longer counts


@pytest.mark.parametrize("case", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_bad_credentials_get_401_and_not_a_byte_of_the_task(
    endpoint: str,
    case: str,
    api: Any,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    headers = await credentials_for(case, db)
    resp = await call(api, endpoint, task_id, member.workspace_id, headers)
    await assert_refused(resp, 401, "UNAUTHENTICATED", task_id, member.workspace_id)
    await assert_untouched(task_store, task_id, db)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_the_session_cookie_works_like_the_bearer_header(
    endpoint: str, api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    headers = {"Cookie": f"praxiom_session={member.token}"}
    await assert_allowed(await call(api, endpoint, task_id, member.workspace_id, headers), endpoint)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_non_member_gets_403_and_not_a_byte_of_the_task(
    endpoint: str, api: Any, member: IssuedToken, db: Database, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    outsider = await AccountStore(db).create_token(workspace="beta", user="bob")
    resp = await call(api, endpoint, task_id, member.workspace_id, bearer(outsider.token))
    await assert_refused(resp, 403, "FORBIDDEN", task_id, member.workspace_id)
    await assert_untouched(task_store, task_id, db)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_member_who_loses_membership_gets_200_then_403(
    endpoint: str, api: Any, member: IssuedToken, db: Database, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    other = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    first = await call(api, endpoint, task_id, member.workspace_id, bearer(member.token))
    await assert_allowed(first, endpoint)

    assert await AccountStore(db).remove_member(workspace="acme", user="ann")
    # A second, untouched task, so a refused cancel cannot hide behind a 409.
    resp = await call(api, endpoint, other, member.workspace_id, bearer(member.token))
    await assert_refused(resp, 403, "FORBIDDEN", other, member.workspace_id)
    row = await task_store.get_task(other)
    assert row is not None and row.status == "pending" and row.version == 1


async def test_a_token_stops_working_once_it_expires(
    api: Any, member: IssuedToken, db: Database, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    short = await AccountStore(db).create_token(workspace="acme", user="ann", expires_in_s=0.5)
    path = f"/api/tasks/{task_id}/status"
    assert (await api.get(path, headers=bearer(short.token))).status == 200
    await asyncio.sleep(0.6)
    resp = await api.get(path, headers=bearer(short.token))
    await assert_refused(resp, 401, "UNAUTHENTICATED", task_id, member.workspace_id)


async def test_the_bearer_header_wins_over_the_cookie(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    headers = {"Authorization": "Bearer pxp_wrong", "Cookie": f"praxiom_session={member.token}"}
    resp = await api.get(f"/api/tasks/{task_id}/status", headers=headers)
    await assert_refused(resp, 401, "UNAUTHENTICATED", task_id, member.workspace_id)


# -- malformed ids, unknown routes, wrong methods ----------------------------------------------

TASK_PATHS = [
    ("GET", "/api/tasks/{id}/status"),
    ("GET", "/api/tasks/{id}/progress"),
    ("POST", "/api/tasks/{id}/cancel"),
    ("GET", "/api/tasks/{id}"),
]
BAD_IDS = ["not-a-uuid", "12345", "00000000-0000-0000-0000-00000000000g", "%20"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(("method", "template"), TASK_PATHS)
async def test_a_malformed_id_is_404_with_a_token_and_401_without(
    method: str, template: str, bad_id: str, api: Any, member: IssuedToken
) -> None:
    path = template.format(id=bad_id)
    resp = await api.request(method, path, headers=bearer(member.token))
    await error_of(resp, 404, "NOT_FOUND")
    resp = await api.request(method, path)
    await error_of(resp, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(("method", "template"), TASK_PATHS)
async def test_an_unknown_well_formed_id_is_404(
    method: str, template: str, api: Any, member: IssuedToken, db: Database
) -> None:
    resp = await api.request(method, template.format(id=uuid4()), headers=bearer(member.token))
    await error_of(resp, 404, "NOT_FOUND")
    assert await task_count(db) == 0


@pytest.mark.parametrize("path", ["/api/nothing", "/", "/api/tasks/", "/api/tasks/x/y/z"])
async def test_an_unknown_route_is_a_json_404(path: str, api: Any, member: IssuedToken) -> None:
    resp = await api.get(path, headers=bearer(member.token))
    await error_of(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "template", "allowed"),
    [
        ("DELETE", "/api/tasks/{id}", "GET"),
        ("PUT", "/api/tasks/{id}/status", "GET"),
        ("POST", "/api/tasks/{id}/progress", "GET"),
        ("GET", "/api/tasks/{id}/cancel", "POST"),
        ("DELETE", "/api/tasks/spawn", "POST"),
    ],
)
async def test_a_wrong_method_is_a_json_405(
    method: str,
    template: str,
    allowed: str,
    api: Any,
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    path = template.format(id=task_id)
    resp = await api.request(method, path, headers=bearer(member.token))
    raw = await resp.read()
    await error_of(resp, 405, "METHOD_NOT_ALLOWED")
    assert allowed in resp.headers.get("Allow", ""), resp.headers
    assert_no_task_bytes(raw, task_id)
    row = await task_store.get_task(task_id)
    assert row is not None and row.version == 1


async def test_get_on_the_spawn_route_is_a_405(api: Any, member: IssuedToken) -> None:
    resp = await api.get(SPAWN, headers=bearer(member.token))
    await error_of(resp, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in resp.headers.get("Allow", "")


async def test_get_on_the_spawn_route_never_answers_200_or_500(
    api: Any, member: IssuedToken
) -> None:
    resp = await api.get(SPAWN, headers=bearer(member.token))
    assert resp.status in (404, 405)
    assert (await resp.json())["error"]["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")


# -- PostgreSQL unreachable --------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_postgresql_unreachable_is_a_prompt_503_with_retry_after(
    endpoint: str, aiohttp_client: Any, settings: Settings
) -> None:
    app = create_app(settings.replace(database_url="postgresql://postgres@127.0.0.1:1/x"))
    client = await aiohttp_client(app)
    async with asyncio.timeout(10):
        resp = await call(client, endpoint, uuid4(), uuid4(), bearer("pxp_any-token-at-all"))
        await error_of(resp, 503, "UNAVAILABLE")
    assert int(resp.headers["Retry-After"]) > 0
