"""The task-type catalogue end to end, on real PostgreSQL and Redis: runners write it (at start
and on every heartbeat), the gateway accepts spawns of what it holds, validates their params
against its JSON Schema, lists it at /api/task-types, and reports pending tasks no live runner
serves in /metrics and /readyz."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from uuid import UUID

from marshmallow import Schema, fields, validate

from praxiom_progress.gateway.app import create_app
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    RunnerHarness,
    bearer,
    builtin_registry,
    claim_by_hand,
    wait_for,
    wait_for_status,
)


class ExportParams(Schema):
    rows = fields.Integer(required=True, validate=validate.Range(min=1))
    format = fields.String(load_default="csv", validate=validate.OneOf(["csv", "tsv"]))


async def export_csv(task: TaskContext) -> dict[str, Any]:
    await task.report_progress("export", 50, "Halfway")
    return {"rows": task.params["rows"]}


def export_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register(
        "export_csv",
        export_csv,
        label="CSV Export",
        timeout_s=42,
        description="Exports rows as CSV.",
        params=ExportParams,
        retries=2,
    )
    return registry


async def catalogue_rows(db: Database) -> dict[str, dict[str, Any]]:
    rows = await db.fetch_all("SELECT * FROM task_types")
    return {row["name"]: row for row in rows}


async def spawn(api: Any, token: str, task_type: str, **params: Any) -> Any:
    body = {"task_type": task_type, "params": params}
    return await api.post("/api/tasks/spawn", json=body, headers=bearer(token))


async def test_a_runner_records_its_types_at_start_and_on_every_heartbeat(
    runners: RunnerHarness, db: Database
) -> None:
    await db.fetch_all("DELETE FROM task_types")
    runners.start(export_registry(), runner_heartbeat_interval_s=0.2)
    rows = await wait_for(lambda: _with(db, "export_csv"), timeout_s=5)
    row = rows["export_csv"]
    assert (row["label"], row["description"], row["timeout_s"], row["max_attempts"]) == (
        "CSV Export",
        "Exports rows as CSV.",
        42,
        3,
    )
    schema = row["params_schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["rows"]
    assert schema["properties"]["rows"] == {"type": "integer", "minimum": 1}
    assert schema["properties"]["format"]["enum"] == ["csv", "tsv"]
    assert schema["additionalProperties"] is False
    first: datetime = row["last_served_at"]

    async def refreshed() -> bool:
        return (await catalogue_rows(db))["export_csv"]["last_served_at"] > first

    await wait_for(refreshed, timeout_s=3)


async def _with(db: Database, name: str) -> dict[str, dict[str, Any]] | None:
    rows = await catalogue_rows(db)
    return rows if name in rows else None


async def test_a_type_without_a_params_schema_takes_any_object(
    runners: RunnerHarness, db: Database
) -> None:
    registry = HandlerRegistry()
    registry.register("plain", export_csv)
    runners.start(registry)
    rows = await wait_for(lambda: _with(db, "plain"), timeout_s=5)
    assert rows["plain"]["params_schema"] == {"type": "object"}
    assert rows["plain"]["label"] == "Plain"
    assert rows["plain"]["timeout_s"] == Settings().task_timeouts["default"]


async def test_a_type_a_runner_just_registered_is_spawnable_at_once(
    aiohttp_client: Any, runners: RunnerHarness, db: Database, member: IssuedToken
) -> None:
    api = await aiohttp_client(create_app(runners.settings))
    # The gateway has read the catalogue (the built-in types) before the runner starts.
    assert (await spawn(api, member.token, "research", step_seconds=0)).status == 202
    refused = await spawn(api, member.token, "export_csv", rows=3)
    assert refused.status == 422

    runners.start(export_registry())
    await wait_for(lambda: _with(db, "export_csv"), timeout_s=5)
    started = time.monotonic()
    spawned = await spawn(api, member.token, "export_csv", rows=3)
    assert spawned.status == 202, await spawned.text()
    assert time.monotonic() - started < 1.0
    task_id = (await spawned.json())["task_id"]

    async def completed() -> bool:
        status = await api.get(f"/api/tasks/{task_id}/status", headers=bearer(member.token))
        return (await status.json())["status"] == "completed"

    await wait_for(completed, timeout_s=10)


async def test_an_unknown_type_gets_422_naming_the_known_ones(
    api: Any, member: IssuedToken, db: Database
) -> None:
    response = await spawn(api, member.token, "export_csv", rows=3)
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    (message,) = body["fields"]["task_type"]
    assert message == (
        "Unknown task type; one of: validation_kit, fs_research, research, synthesis"
    )
    assert await db.fetch_all("SELECT id FROM background_tasks") == []


async def test_bad_params_get_422_with_every_field_error(
    aiohttp_client: Any, runners: RunnerHarness, db: Database, member: IssuedToken
) -> None:
    runners.start(export_registry())
    await wait_for(lambda: _with(db, "export_csv"), timeout_s=5)
    api = await aiohttp_client(create_app(runners.settings))

    missing = await spawn(api, member.token, "export_csv", format="pdf", extra=1)
    assert missing.status == 422
    body = await missing.json()
    assert body["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "The params are not valid for task type export_csv",
    }
    assert set(body["fields"]) == {"params.rows", "params.format", "params.extra"}
    assert body["fields"]["params.rows"] == ["Missing data for required field."]
    assert body["fields"]["params.extra"] == ["Unknown field."]
    assert "'pdf' is not one of ['csv', 'tsv']" in body["fields"]["params.format"][0]

    for rows, expected in ((0, "less than the minimum"), ("ten", "is not of type 'integer'")):
        response = await spawn(api, member.token, "export_csv", rows=rows)
        assert response.status == 422
        (message,) = (await response.json())["fields"]["params.rows"]
        assert expected in message
    assert await db.fetch_all("SELECT id FROM background_tasks") == []

    # The built-in types have params schemas too (runner/builtin.py).
    builtin = await spawn(api, member.token, "research", step_seconds=-1, fail_at="nowhere")
    assert builtin.status == 422
    assert set((await builtin.json())["fields"]) == {"params.step_seconds", "params.fail_at"}


async def test_the_task_types_listing(
    aiohttp_client: Any, runners: RunnerHarness, db: Database, member: IssuedToken
) -> None:
    runners.start(export_registry())
    await wait_for(lambda: _with(db, "export_csv"), timeout_s=5)
    # A type no runner has recorded for longer than RUNNER_STALE_AFTER is not served.
    await db.fetch_all(
        "UPDATE task_types SET last_served_at = now() - interval '1 hour' "
        "WHERE name = 'fs_research'"
    )
    api = await aiohttp_client(create_app(runners.settings))
    assert (await api.get("/api/task-types")).status == 401
    response = await api.get("/api/task-types", headers=bearer(member.token))
    assert response.status == 200
    listed = {t["name"]: t for t in (await response.json())["task_types"]}
    assert set(listed) == set(builtin_registry()) | {"export_csv"}
    export = listed["export_csv"]
    assert set(export) == {"name", "label", "served", "timeout_s", "description", "params_schema"}
    assert export["served"] is True
    assert (export["label"], export["timeout_s"]) == ("CSV Export", 42)
    assert export["params_schema"]["required"] == ["rows"]
    assert listed["fs_research"]["served"] is False
    assert listed["fs_research"]["label"] == "FS-Research"


async def test_task_types_is_an_allow_list_when_set(
    aiohttp_client: Any, settings: Settings, member: IssuedToken
) -> None:
    api = await aiohttp_client(create_app(settings.replace(task_types=("research",))))
    refused = await spawn(api, member.token, "validation_kit")
    assert refused.status == 422
    assert (await refused.json())["fields"]["task_type"] == ["Unknown task type; one of: research"]
    assert (await spawn(api, member.token, "research")).status == 202
    listing = await (await api.get("/api/task-types", headers=bearer(member.token))).json()
    assert [t["name"] for t in listing["task_types"]] == ["research"]


async def test_pending_tasks_no_live_runner_serves_show_in_metrics_and_readyz(
    api: Any, db: Database, member: IssuedToken
) -> None:
    ready = await (await api.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["warnings"] == []

    await db.fetch_all("UPDATE task_types SET last_served_at = now() - interval '1 hour'")
    for _ in range(2):
        assert (await spawn(api, member.token, "research")).status == 202
    # A type gone from the catalogue altogether (its tasks were spawned before).
    await db.fetch_all(
        "INSERT INTO background_tasks (workspace_id, task_type, created_at) "
        "VALUES (%(ws)s, 'retired', now() - interval '30 seconds')",
        {"ws": member.workspace_id},
    )

    response = await api.get("/readyz")
    assert response.status == 200
    ready = await response.json()
    assert ready["status"] == "ready"  # a warning, not a failure
    warnings = {w["task_type"]: w for w in ready["warnings"]}
    assert set(warnings) == {"research", "retired"}
    assert warnings["research"]["pending"] == 2
    assert warnings["retired"]["oldest_pending_s"] >= 30
    assert "no live runner" in warnings["retired"]["message"]

    metrics = await (await api.get("/metrics")).text()
    assert 'praxiom_gateway_unserved_pending_tasks{task_type="research"} 2.0' in metrics
    assert 'praxiom_gateway_unserved_pending_tasks{task_type="retired"} 1.0' in metrics
    oldest = [
        line
        for line in metrics.splitlines()
        if line.startswith('praxiom_gateway_unserved_oldest_pending_seconds{task_type="retired"}')
    ]
    assert len(oldest) == 1 and float(oldest[0].split()[-1]) >= 30


async def test_a_served_type_raises_no_warning(api: Any, db: Database, member: IssuedToken) -> None:
    await db.fetch_all("UPDATE task_types SET last_served_at = now()")
    assert (await spawn(api, member.token, "research")).status == 202
    ready = await (await api.get("/readyz")).json()
    assert ready["warnings"] == []


async def test_the_reaper_names_a_type_it_does_not_serve_by_its_catalogued_label(
    runners: RunnerHarness, db: Database, member: IssuedToken
) -> None:
    task_store = TaskStore(db)
    stuck = await spawn_row(task_store, member, "fs_research")
    await claim_by_hand(
        db, stuck, runner_id="stuck", started_ago_s=700, beat_ago_s=0, timeout_s=600
    )
    registry = HandlerRegistry()
    registry.register("other", export_csv)
    runners.start(registry)  # serves neither fs_research nor its label
    final = await wait_for_status(task_store, stuck, {"failed"}, timeout_s=5)
    assert final.error == "FS-Research task timed out after 600s"


async def spawn_row(store: TaskStore, member: IssuedToken, task_type: str) -> UUID:
    task = await store.insert_task(workspace_id=member.workspace_id, task_type=task_type, params={})
    return task.id


async def test_before_any_runner_started_every_type_is_unknown(
    api: Any, db: Database, member: IssuedToken
) -> None:
    await db.fetch_all("DELETE FROM task_types")
    response = await spawn(api, member.token, "research")
    assert response.status == 422
    assert (await response.json())["fields"]["task_type"] == [
        "Unknown task type; none is catalogued yet (no runner has started)"
    ]
    listing = await (await api.get("/api/task-types", headers=bearer(member.token))).json()
    assert listing == {"task_types": []}
