"""Spawn params against a catalogued JSON Schema: every error, keyed by field under `params`."""

from __future__ import annotations

from typing import Any

from praxiom_progress.taskstate.params import ParamsCheck

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rows": {"type": "integer", "minimum": 1},
        "format": {"type": "string", "enum": ["csv", "tsv"]},
        "target": {"$ref": "#/$defs/Target"},
    },
    "required": ["rows", "format"],
    "additionalProperties": False,
    "$defs": {
        "Target": {
            "type": "object",
            "properties": {"bucket": {"type": "string"}},
            "required": ["bucket"],
        }
    },
}


def test_valid_params_have_no_errors() -> None:
    check = ParamsCheck("export_csv", SCHEMA)
    assert check.field_errors({"rows": 3, "format": "csv", "target": {"bucket": "b"}}) == {}


def test_every_error_is_named_by_its_field() -> None:
    errors = ParamsCheck("export_csv", SCHEMA).field_errors(
        {"rows": 0, "extra": 1, "more": 2, "target": {"bucket": 5}}
    )
    assert set(errors) == {
        "params.rows",
        "params.format",
        "params.extra",
        "params.more",
        "params.target.bucket",
    }
    assert errors["params.format"] == ["Missing data for required field."]
    assert errors["params.extra"] == errors["params.more"] == ["Unknown field."]
    assert "less than the minimum of 1" in errors["params.rows"][0]
    assert "is not of type 'string'" in errors["params.target.bucket"][0]


def test_a_nested_missing_field_is_named_under_its_parent() -> None:
    errors = ParamsCheck("t", SCHEMA).field_errors({"rows": 1, "format": "csv", "target": {}})
    assert errors == {"params.target.bucket": ["Missing data for required field."]}


def test_an_unusable_schema_accepts_any_object() -> None:
    check = ParamsCheck("broken", {"type": "no-such-type"})
    assert check.field_errors({"anything": 1}) == {}
