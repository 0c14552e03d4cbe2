"""What makes a spawn valid, for every way in: the gateway's `POST /api/tasks/spawn` and an
application's `praxiom_progress.spawn` inside its own transaction check the same thing, here.

A spawn names a task type of the `task_types` catalogue (which the runners write), and its
params must pass that type's JSON Schema. A refusal is a `SpawnRejected` carrying every field
error, keyed as marshmallow keys them (`task_type`, `params`, `params.rows`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, validate

from praxiom_progress.taskstate.params import ParamsCheck

#: docs/design.md, Clarifications: params over this many bytes of compact JSON are refused.
MAX_PARAMS_BYTES = 65_536
# json.dumps writes NUL as \u0000; an even run of backslashes before it is escaped text.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: The message of a spawn whose fields (not its params) are refused.
INVALID_SPAWN = "The request body is not valid"


class StorableJsonObject(fields.Dict):
    """A JSON object PostgreSQL's jsonb can store, of at most `MAX_PARAMS_BYTES` as compact JSON.

    What jsonb would refuse (NUL, NaN, lone surrogates) is refused here, with a 422, not a 500.
    Its own type so the OpenAPI document can say the same (gateway/openapi.py).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(), **kwargs)

    def _validate(self, value: Any) -> None:
        super()._validate(value)
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode("utf-8"))
        except (ValueError, TypeError) as exc:  # NaN, a lone surrogate, a non-JSON value
            raise ValidationError(f"Must be storable JSON: {exc}") from exc
        if _NUL_ESCAPE.search(text):
            raise ValidationError("Must not contain the NUL character (\\u0000)")
        if size > MAX_PARAMS_BYTES:
            raise ValidationError(f"Must be at most {MAX_PARAMS_BYTES} bytes as JSON, got {size}")


class SpawnRequestSchema(Schema):
    """A spawn: `POST /api/tasks/spawn`'s body, or `praxiom_progress.spawn`'s arguments;
    unknown fields are refused (marshmallow's default). Build it with `spawn_request_schema`,
    which names the accepted task types."""

    task_type = fields.String(required=True)
    workspace_id = fields.UUID(load_default=None)
    params = StorableJsonObject(load_default=dict)


def spawn_request_schema(task_types: Collection[str]) -> SpawnRequestSchema:
    """The spawn's schema for these task types, to build once and reuse: its own class
    with its own `task_type` field, so no validator is shared with (or added to) another
    instance's. The OpenAPI document lists the types from it."""
    error = "Unknown task type; one of: {choices}"
    if not task_types:
        error = "Unknown task type; none is catalogued yet (no runner has started)"
    task_type = fields.String(required=True, validate=validate.OneOf(task_types, error=error))
    schema_class = type("SpawnRequestSchema", (SpawnRequestSchema,), {"task_type": task_type})
    return cast(SpawnRequestSchema, schema_class())


class SpawnRejected(ValueError):
    """A spawn the catalogue refuses: `message` says why, `fields` holds every field error
    (the gateway answers them as a 422's `fields`)."""

    def __init__(self, message: str, fields: Mapping[str, Any]) -> None:
        super().__init__(f"{message}: {json.dumps(fields, ensure_ascii=False, default=str)}")
        self.message = message
        self.fields: dict[str, Any] = dict(fields)


@dataclass(frozen=True)
class TaskType:
    name: str
    label: str
    description: str
    timeout_s: float
    params_schema: Mapping[str, Any]
    max_attempts: int
    served: bool  # a live runner recorded it within RUNNER_STALE_AFTER

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskType:
        return cls(
            row["name"],
            row["label"],
            row["description"],
            row["timeout_s"],
            row["params_schema"],
            row["max_attempts"],
            bool(row["served"]),
        )

    def listing(self) -> dict[str, Any]:
        """One item of `GET /api/task-types`."""
        return {
            "name": self.name,
            "label": self.label,
            "served": self.served,
            "timeout_s": self.timeout_s,
            "description": self.description,
            "params_schema": dict(self.params_schema),
        }


@dataclass
class CatalogueView:
    """One read of the catalogue: the accepted types, the spawn's schema naming them, and
    each type's params check (built when first needed)."""

    types: Mapping[str, TaskType]
    read_at: float  # time.monotonic() when the read began
    spawn_schema: SpawnRequestSchema = field(init=False)
    _checks: dict[str, ParamsCheck] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.spawn_schema = spawn_request_schema(tuple(self.types))

    @classmethod
    def from_rows(
        cls, rows: Sequence[Mapping[str, Any]], read_at: float, allowed: Collection[str] = ()
    ) -> CatalogueView:
        """The rows of the `task_types` query; `allowed` (TASK_TYPES) narrows them when set."""
        types = (TaskType.from_row(row) for row in rows)
        return cls({t.name: t for t in types if not allowed or t.name in allowed}, read_at)

    def params_errors(self, task_type: str, params: Mapping[str, Any]) -> dict[str, list[str]]:
        check = self._checks.get(task_type)
        if check is None:
            check = self._checks[task_type] = ParamsCheck(
                task_type, self.types[task_type].params_schema
            )
        return check.field_errors(params)

    def check_spawn(self, spawn: Any, invalid: str = INVALID_SPAWN) -> dict[str, Any]:
        """The loaded spawn (`task_type`, `workspace_id` or None, `params`): a type of the
        catalogue, with params its JSON Schema accepts; `SpawnRejected` otherwise (`invalid`
        is its message when the fields themselves are refused)."""
        try:
            spec: dict[str, Any] = self.spawn_schema.load(spawn)
        except ValidationError as exc:
            raise SpawnRejected(invalid, cast(dict[str, Any], exc.messages)) from exc
        errors = self.params_errors(spec["task_type"], spec["params"])
        if errors:
            raise SpawnRejected(
                f"The params are not valid for task type {spec['task_type']}", errors
            )
        return spec
