"""The OpenAPI document shows each catalogued type's params: a component per type, and a
SpawnRequest whose params must match the schema its task_type names."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from marshmallow import Schema, fields, validate

from praxiom_progress.gateway import openapi
from praxiom_progress.runner.catalogue import params_json_schema
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.spawning import TaskType


class Target(Schema):
    bucket = fields.String(required=True)


class ExportParams(Schema):
    rows = fields.Integer(required=True, validate=validate.Range(min=1))
    target = fields.Nested(Target)


def task_type(name: str, params: type[Schema] | None) -> TaskType:
    return TaskType(name, name.title(), f"The {name}.", 60.0, params_json_schema(params), 1, True)


TYPES = [task_type("export_csv", ExportParams), task_type("anything", None)]


def spawn_validator(document: dict[str, Any]) -> Draft202012Validator:
    root = {"$ref": "#/components/schemas/SpawnRequest", "components": document["components"]}
    return Draft202012Validator(root)


def test_each_type_has_a_params_component() -> None:
    schemas = openapi.build(Settings(), TYPES)["components"]["schemas"]
    export = schemas["TaskParams.export_csv"]
    assert export["title"] == "Export_Csv params" and export["description"] == "The export_csv."
    assert export["required"] == ["rows"]
    assert export["properties"]["target"] == {
        "$ref": "#/components/schemas/TaskParams.export_csv/$defs/Target"
    }
    assert "$schema" not in export
    assert schemas["TaskParams.anything"]["type"] == "object"
    assert schemas["SpawnRequest"]["properties"]["task_type"]["enum"] == ["export_csv", "anything"]


def test_spawn_request_params_follow_their_task_type() -> None:
    validator = spawn_validator(openapi.build(Settings(), TYPES))
    assert validator.is_valid({"task_type": "export_csv", "params": {"rows": 2}})
    assert validator.is_valid(
        {"task_type": "export_csv", "params": {"rows": 2, "target": {"bucket": "b"}}}
    )
    assert not validator.is_valid({"task_type": "export_csv", "params": {"rows": 0}})
    assert not validator.is_valid({"task_type": "export_csv", "params": {"target": {}}})
    assert validator.is_valid({"task_type": "anything", "params": {"x": 1}})
    assert not validator.is_valid({"task_type": "nope", "params": {}})


def test_without_catalogued_types_any_task_type_string_is_described() -> None:
    document = openapi.build(Settings())
    spawn = document["components"]["schemas"]["SpawnRequest"]
    assert "enum" not in spawn["properties"]["task_type"] and "oneOf" not in spawn
    assert not any(name.startswith("TaskParams.") for name in document["components"]["schemas"])
    assert spawn_validator(document).is_valid({"task_type": "whatever"})
