"""The JSON endpoints: spawn, status, the canonical record, cancel."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from aiohttp import web
from marshmallow import ValidationError

from gateway.access_log import note_principal
from gateway.auth import authorize, parse_task_id, token_hash
from gateway.errors import (
    ApiError,
    forbidden,
    json_response,
    not_found,
    read_only,
    unauthenticated,
)
from gateway.keys import GATEWAY_STORE, PUBLISHER, SETTINGS, TASK_STORE
from gateway.limits import SPAWN_LIMITER
from gateway.schemas import SpawnRequestSchema, record_from_row
from taskstate.db import Row
from taskstate.errors import NotFound
from taskstate.payloads import payload_from_row
from taskstate.store import TaskAlreadyFinished


async def _task_for_caller(request: web.Request, *, write: bool = False) -> Row:
    digest = token_hash(request, request.app[SETTINGS].session_cookie_name)
    task_id = parse_task_id(request.match_info["task_id"])
    _, row = await authorize(request.app[GATEWAY_STORE], digest, task_id, write=write)
    return row


async def status(request: web.Request) -> web.Response:
    """The same payload, from the same function, as each SSE event."""
    return json_response(payload_from_row(await _task_for_caller(request)))


async def record(request: web.Request) -> web.Response:
    return json_response(record_from_row(await _task_for_caller(request)))


async def cancel(request: web.Request) -> web.Response:
    row = await _task_for_caller(request, write=True)
    try:
        # Shielded: a client that hangs up must not split the write from its publish.
        cancelled = await asyncio.shield(_cancel_and_publish(request.app, row["id"]))
    except TaskAlreadyFinished as exc:
        raise ApiError(
            409,
            "CONFLICT",
            f"The task is already {exc.row['status']}",
            task=payload_from_row(exc.row),
        ) from exc
    except NotFound as exc:
        raise not_found() from exc
    return json_response(payload_from_row(cancelled), status=202)


async def _cancel_and_publish(app: web.Application, task_id: UUID) -> Row:
    row = await app[TASK_STORE].cancel_task(task_id)
    await app[PUBLISHER].publish(payload_from_row(row))
    return row


async def spawn(request: web.Request) -> web.Response:
    """401, then 403 for a read-only token, then 429 over the caller's spawn rate, then the
    body (413, 400, 422), then 403 for a workspace the caller may not act in."""
    settings = request.app[SETTINGS]
    digest = token_hash(request, settings.session_cookie_name)
    store = request.app[GATEWAY_STORE]
    principal = await store.principal(digest)
    if principal is None:
        raise unauthenticated()
    note_principal(principal.caller.key)
    if principal.caller.read_only:
        raise read_only()
    request.app[SPAWN_LIMITER].take(principal.caller.key)
    try:
        spec = SpawnRequestSchema(settings.task_types).load(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(
            422, "VALIDATION_ERROR", "The request body is not valid", fields=exc.messages
        ) from exc
    workspace_id = spec["workspace_id"]
    if workspace_id is None:
        if len(principal.workspace_ids) != 1 or principal.all_workspaces:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                "workspace_id is required unless you may act in exactly one workspace",
                fields={"workspace_id": ["Missing data for required field."]},
            )
        (workspace_id,) = principal.workspace_ids
    elif principal.all_workspaces:
        # Granted every workspace: whether this one exists is asked, as part of the same query.
        principal = await store.principal(digest, workspace_id) or principal
        if not principal.may_act_in(workspace_id):
            raise forbidden()
    elif not principal.may_act_in(workspace_id):
        raise forbidden()
    row = await asyncio.shield(
        _insert_and_publish(request.app, workspace_id, spec["task_type"], spec["params"])
    )
    payload = payload_from_row(row)
    return json_response(
        {**payload, "task_id": payload["id"]},
        status=202,
        headers={"Location": f"/api/tasks/{payload['id']}"},
    )


async def _insert_and_publish(
    app: web.Application, workspace_id: UUID, task_type: str, params: dict[str, Any]
) -> Row:
    row = await app[TASK_STORE].insert_task(
        workspace_id=workspace_id, task_type=task_type, params=params
    )
    await app[PUBLISHER].publish(payload_from_row(row))
    return row


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: web.Request) -> Any:
    """The parsed body; 400 when it is not JSON (NaN and Infinity included: jsonb has none)."""
    raw = await request.read()  # over client_max_size: aiohttp raises 413
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(
            400, "VALIDATION_ERROR", f"The request body must be a JSON object: {exc}"
        ) from exc
