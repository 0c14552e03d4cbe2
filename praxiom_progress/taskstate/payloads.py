"""The task payload: one shape for every SSE event, every `/status` answer and every publish.

`task_payload` is the only way a payload is made, so the three can never
drift apart; `encode_payload` is the only way one is turned into bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.status import TaskStatus

__all__ = [
    "PAYLOAD_FIELDS",
    "TaskPayloadSchema",
    "UtcTimestamp",
    "ValidationError",
    "encode_payload",
    "task_payload",
]


class UtcTimestamp(fields.DateTime):
    """ISO 8601 in UTC with milliseconds and `Z`, as in the spec's examples.

    marshmallow's own `format=` does not convert time zones, so convert here.
    """

    def _serialize(
        self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        text = value.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")


class TaskPayloadSchema(Schema):
    """The spec's eleven fields plus `version` (DESIGN.md, Clarifications), in the spec's order."""

    id = fields.UUID(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([status.value for status in TaskStatus])
    )
    task_type = fields.String(required=True, validate=validate.Length(min=1))
    progress_pct = fields.Integer(required=True, strict=True, validate=validate.Range(0, 100))
    phase = fields.String(required=True)
    message = fields.String(required=True)
    started_at = UtcTimestamp(required=True, allow_none=True)
    completed_at = UtcTimestamp(required=True, allow_none=True)
    heartbeat_at = UtcTimestamp(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    result_data = fields.Dict(keys=fields.String(), required=True)
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


PAYLOAD_FIELDS: tuple[str, ...] = tuple(TaskPayloadSchema().fields)

_schema = TaskPayloadSchema()


def task_payload(task: Task) -> dict[str, Any]:
    """The task's payload: its first twelve fields, in the spec's order."""
    return _schema.dump(task)


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The wire form: compact JSON, UTF-8 kept as is. The gateway forwards it unchanged."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
