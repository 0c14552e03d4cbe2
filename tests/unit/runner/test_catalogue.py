"""What a runner writes to the catalogue: entries from the registry, and each params schema as
JSON Schema (apispec's marshmallow converter), self-contained."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from marshmallow import Schema, fields, validate

from praxiom_progress.runner.builtin import FS_RESEARCH_STEPS
from praxiom_progress.runner.catalogue import catalogue_entries, params_json_schema
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext, load_registry
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import wait_for
from tests.unit.runner.fake_store import FakeRunnerStore
from tests.unit.runner.runner_kit import RunnerKit, registry_of


class Line(Schema):
    sku = fields.String(required=True)
    quantity = fields.Integer(validate=validate.Range(min=1))


class Order(Schema):
    lines = fields.List(fields.Nested(Line), required=True)
    ship_to = fields.Nested(Line)


async def noop(task: TaskContext) -> dict[str, Any]:
    return {}


def test_nested_schemas_move_into_defs_and_the_result_is_valid_json_schema() -> None:
    schema = params_json_schema(Order)
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    assert schema["properties"]["ship_to"] == {"$ref": "#/$defs/Line"}
    assert set(schema["$defs"]) == {"Line"}
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"lines": [{"sku": "a", "quantity": 2}]})
    assert not validator.is_valid({"lines": [{"quantity": 0}]})
    assert not validator.is_valid({"lines": [], "other": 1})  # unknown=RAISE: refused


def test_no_params_schema_is_any_object() -> None:
    assert params_json_schema(None) == {"type": "object"}


def test_entries_carry_what_the_registry_and_settings_resolve() -> None:
    registry = HandlerRegistry()
    registry.register("deep_dive", noop, retries=2, description="Digs.")
    registry.register("quick", noop, timeout_s=5, label="Quick One", params=Line)
    settings = Settings(task_timeouts={"default": 300.0, "deep_dive": 90.0})
    entries = catalogue_entries(registry, registry.timeouts(settings))
    assert [(e.name, e.label, e.timeout_s, e.max_attempts) for e in entries] == [
        ("deep_dive", "Deep Dive", 90.0, 3),
        ("quick", "Quick One", 5, 1),
    ]
    assert entries[0].description == "Digs."
    assert entries[1].params_schema["required"] == ["sku"]
    assert entries[1].as_json()["params_schema"] == dict(entries[1].params_schema)


def test_the_builtin_types_describe_their_params() -> None:
    registry = load_registry(("praxiom_progress.runner.builtin",))
    entries = {e.name: e for e in catalogue_entries(registry, registry.timeouts(Settings()))}
    schema = entries["fs_research"].params_schema
    assert schema["properties"]["fail_at"]["enum"] == [s.name for s in FS_RESEARCH_STEPS]
    assert schema["properties"]["step_seconds"]["maximum"] == 3600
    assert schema["additionalProperties"] is True  # the simulations let other keys through
    assert entries["fs_research"].label == "FS-Research"
    assert entries["validation_kit"].timeout_s == 240


async def test_an_idle_runner_records_its_types_at_start_and_on_every_beat(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    runners.start(registry_of(sample=noop), runner_heartbeat_interval_s=0.05)
    await wait_for(lambda: _recorded(store, 3), timeout_s=2)
    assert all(args == {"names": ["sample"]} for args in store.called("record_task_types"))
    entry, _ = store.task_types["sample"]
    assert (entry.label, entry.timeout_s, entry.max_attempts) == ("Sample", 300.0, 1)


async def test_a_start_without_postgresql_still_runs_and_records_on_a_later_beat(
    runners: RunnerKit, store: FakeRunnerStore
) -> None:
    store.fail_next("record_task_types")
    runners.start(registry_of(sample=noop), runner_heartbeat_interval_s=0.05)
    await wait_for(lambda: _has(store, "sample"), timeout_s=2)


async def _recorded(store: FakeRunnerStore, times: int) -> bool:
    return len(store.called("record_task_types")) >= times


async def _has(store: FakeRunnerStore, name: str) -> bool:
    return name in store.task_types
