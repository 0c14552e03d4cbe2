"""Spawn params checked against a task type's JSON Schema (from the catalogue), with jsonschema:
the gateway validates what the application's marshmallow schema would refuse without importing
the application's code.

Every error is reported, keyed like marshmallow's but flat, under `params`:
`{"params.rows": ["Missing data for required field."], "params.format": ["..."]}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import SchemaError

log = logging.getLogger("gateway")

_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


class ParamsCheck:
    """One task type's params validator, built once per catalogue read."""

    def __init__(self, task_type: str, schema: Mapping[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:  # a runner wrote a schema no validator can use
            log.warning(
                "task type %s: its params schema is not valid JSON Schema (%s); any object "
                "is accepted",
                task_type,
                exc.message,
                extra={"action": "params_schema_invalid"},
            )
            schema = _ANY_OBJECT
        self._validator = Draft202012Validator(schema)

    def field_errors(self, params: Mapping[str, Any]) -> dict[str, list[str]]:
        """Every error, by field; empty when the params are valid."""
        fields: dict[str, list[str]] = {}
        for error in self._validator.iter_errors(params):
            for key, message in _messages(error):
                fields.setdefault(key, []).append(message)
        return dict(sorted(fields.items()))


def _messages(error: ValidationError) -> list[tuple[str, str]]:
    """`(field key, message)` for one error: a missing or an unknown property is named by
    the property itself, as marshmallow names it."""
    path = ".".join(["params", *(str(part) for part in error.absolute_path)])
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        return [(f"{path}.{name}", "Missing data for required field.") for name in missing]
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = set(error.schema.get("properties", {}))
        extra = [name for name in instance if name not in known]
        if extra and not error.schema.get("patternProperties"):
            return [(f"{path}.{name}", "Unknown field.") for name in extra]
    return [(path, error.message)]
