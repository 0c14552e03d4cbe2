"""Request and response schemas of the JSON endpoints (the stream's payload is taskstate's)."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validates

from taskstate.payloads import TaskPayloadSchema, UtcTimestamp

#: DESIGN.md, Clarifications: params over this many bytes of compact JSON are refused.
MAX_PARAMS_BYTES = 65_536
# json.dumps writes NUL as \u0000; an even run of backslashes before it is escaped text.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class SpawnRequestSchema(Schema):
    """`POST /api/tasks/spawn`; unknown fields are refused (marshmallow's default)."""

    task_type = fields.String(required=True)
    workspace_id = fields.UUID(load_default=None)
    params = fields.Dict(keys=fields.String(), load_default=dict)

    def __init__(self, task_types: Collection[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_types = task_types

    @validates("task_type")
    def _known_type(self, value: str, **kwargs: Any) -> None:
        if value not in self.task_types:
            raise ValidationError(f"Unknown task type; one of: {', '.join(self.task_types)}")

    @validates("params")
    def _storable(self, value: Mapping[str, Any], **kwargs: Any) -> None:
        """What PostgreSQL's jsonb would refuse is refused here, with a 422, not a 500."""
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            size = len(text.encode("utf-8"))
        except ValueError as exc:  # NaN or Infinity; a lone surrogate (UnicodeEncodeError)
            raise ValidationError(f"Must be storable JSON: {exc}") from exc
        if _NUL_ESCAPE.search(text):
            raise ValidationError("Must not contain the NUL character (\\u0000)")
        if size > MAX_PARAMS_BYTES:
            raise ValidationError(f"Must be at most {MAX_PARAMS_BYTES} bytes as JSON, got {size}")


class TaskRecordSchema(TaskPayloadSchema):
    """`GET /api/tasks/{task_id}`: the payload plus the row's own fields."""

    workspace_id = fields.UUID(required=True)
    params = fields.Dict(keys=fields.String(), required=True)
    created_at = UtcTimestamp(required=True)
    updated_at = UtcTimestamp(required=True)


RECORD_FIELDS: tuple[str, ...] = tuple(TaskRecordSchema().fields)
_record_schema = TaskRecordSchema()


def record_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return _record_schema.dump({name: row[name] for name in RECORD_FIELDS})


__all__ = ["SpawnRequestSchema", "TaskRecordSchema", "record_from_row"]
