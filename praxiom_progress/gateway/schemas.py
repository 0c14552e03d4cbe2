"""Request and response schemas of the JSON endpoints (the stream's payload is taskstate's)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import TaskPayloadSchema, UtcTimestamp

# The spawn's own schema is shared with `praxiom_progress.spawn` (taskstate/spawning.py).
from praxiom_progress.taskstate.spawning import (
    MAX_PARAMS_BYTES,
    SpawnRequestSchema,
    StorableJsonObject,
    spawn_request_schema,
)


class TaskRecordSchema(TaskPayloadSchema):
    """`GET /api/tasks/{task_id}`: the payload plus the row's own fields."""

    workspace_id = fields.UUID(required=True)
    params = fields.Dict(keys=fields.String(), required=True)
    created_at = UtcTimestamp(required=True)
    updated_at = UtcTimestamp(required=True)
    # Which attempt runs (or ran) last: 0 until claimed, each claim counts one; a task whose
    # type has retries may take up to max_attempts.
    attempt = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)


class SpawnedTaskSchema(TaskPayloadSchema):
    """`POST /api/tasks/spawn`'s 202: the new task's payload plus `task_id` (equal to `id`)."""

    task_id = fields.UUID(required=True)


#: Every `error.code` the gateway sends (gateway/errors.py).
ERROR_CODES = (
    "VALIDATION_ERROR",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "REQUEST_TIMEOUT",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
    "RATE_LIMITED",
    "UNAVAILABLE",
    "INTERNAL",
)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, validate=validate.OneOf(ERROR_CODES))
    message = fields.String(required=True)


class ErrorSchema(Schema):
    """Every refusal: `{"error": {"code", "message"}}` (gateway/errors.py)."""

    error = fields.Nested(ErrorDetailSchema, required=True)
    # 422 only: marshmallow's messages, keyed by field (nested for `params`).
    # (`fields` is Schema's own attribute, hence the data_key.)
    field_errors = fields.Dict(keys=fields.String(), data_key="fields")


class ConflictSchema(ErrorSchema):
    """409 on cancel: the error plus the task's current (terminal) payload."""

    task = fields.Nested(TaskPayloadSchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class DependencySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["up", "down"]))
    latency_ms = fields.Float(required=True, validate=validate.Range(min=0))
    reason = fields.String()  # when down: "timeout" or the error's type name


class RedisDependencySchema(DependencySchema):
    # The gateway's one shared pub/sub subscription, which streams rely on.
    subscription = fields.String(required=True, validate=validate.OneOf(["up", "down"]))


class UnservedWarningSchema(Schema):
    """Pending tasks of a type no live runner serves: they wait until one does."""

    task_type = fields.String(required=True)
    pending = fields.Integer(required=True, validate=validate.Range(min=1))
    oldest_pending_s = fields.Float(required=True, validate=validate.Range(min=0))
    message = fields.String(required=True)


class ReadinessSchema(Schema):
    """`GET /readyz`: ready, degraded (Redis down; streams poll) or unavailable (PostgreSQL).
    `warnings` never change the status: pending tasks of types no live runner serves."""

    status = fields.String(
        required=True, validate=validate.OneOf(["ready", "degraded", "unavailable"])
    )
    postgres = fields.Nested(DependencySchema, required=True)
    redis = fields.Nested(RedisDependencySchema, required=True)
    warnings = fields.List(fields.Nested(UnservedWarningSchema), required=True)


class TaskTypeSchema(Schema):
    """One task type of the catalogue the runners write."""

    name = fields.String(required=True)
    label = fields.String(required=True)
    served = fields.Boolean(
        required=True, metadata={"description": "A live runner serves it (RUNNER_STALE_AFTER)."}
    )
    timeout_s = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False))
    description = fields.String(required=True)
    params_schema = fields.Dict(
        required=True, metadata={"description": "The JSON Schema (2020-12) of its params."}
    )


class TaskTypesSchema(Schema):
    """`GET /api/task-types`."""

    task_types = fields.List(fields.Nested(TaskTypeSchema), required=True)


_record_schema = TaskRecordSchema()


def task_record(task: Task) -> dict[str, Any]:
    """`GET /api/tasks/{task_id}`'s body (the task read in full, not a payload-only row)."""
    return _record_schema.dump(task)


__all__ = [
    "MAX_PARAMS_BYTES",
    "ConflictSchema",
    "ErrorSchema",
    "HealthSchema",
    "ReadinessSchema",
    "SpawnRequestSchema",
    "SpawnedTaskSchema",
    "StorableJsonObject",
    "TaskRecordSchema",
    "TaskTypesSchema",
    "spawn_request_schema",
    "task_record",
]
