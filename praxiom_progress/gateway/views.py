"""The JSON endpoints: spawn, status, the canonical record, cancel, the task types."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from praxiom_progress.gateway.auth import authenticate, authorize, parse_task_id, token_hash
from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.errors import ApiError, json_response, refusal
from praxiom_progress.gateway.keys import (
    CATALOGUE,
    GATEWAY_STORE,
    SETTINGS,
    SPAWN_LIMITER,
    TASK_STORE,
)
from praxiom_progress.gateway.schemas import task_record
from praxiom_progress.taskstate.errors import NotFound
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.spawning import SpawnRejected
from praxiom_progress.taskstate.store import TaskAlreadyFinished


async def _task_for_caller(request: web.Request, *, write: bool = False) -> Task:
    digest = token_hash(request, request.app[SETTINGS].session_cookie_name)
    task_id = parse_task_id(request.match_info["task_id"])
    _, task = await authorize(request.app[GATEWAY_STORE], digest, task_id, write=write)
    return task


async def status(request: web.Request) -> web.Response:
    """The same payload, from the same function, as each SSE event."""
    return json_response(task_payload(await _task_for_caller(request)))


async def record(request: web.Request) -> web.Response:
    return json_response(task_record(await _task_for_caller(request)))


async def cancel(request: web.Request) -> web.Response:
    task = await _task_for_caller(request, write=True)
    try:
        # No PUBLISH: every gateway hears the cancel's NOTIFY (gateway.written).
        cancelled = await request.app[TASK_STORE].cancel_task(task.id)
    except TaskAlreadyFinished as exc:
        raise ApiError(
            409,
            "CONFLICT",
            f"The task is already {exc.task.status}",
            task=task_payload(exc.task),
        ) from exc
    except NotFound as exc:
        raise refusal(Decision.NOT_FOUND) from exc
    return json_response(task_payload(cancelled), status=202)


async def writes_off(request: web.Request) -> web.Response:
    """Spawn and cancel on a gateway run with GATEWAY_WRITES=0 (it may only read)."""
    raise ApiError(
        404,
        "NOT_FOUND",
        "This gateway does not spawn or cancel tasks; use a gateway that does, or "
        "praxiom_progress.producer from the application",
    )


async def spawn(request: web.Request) -> web.Response:
    """401, then 403 for a read-only token, then 429 over the caller's spawn rate, then the
    body (413, 400, 422), then 403 for a workspace the caller may not act in."""
    app = request.app
    digest = token_hash(request, app[SETTINGS].session_cookie_name)
    principal = await authenticate(app[GATEWAY_STORE], digest, write=True)
    app[SPAWN_LIMITER].take(principal.caller.key)
    spec = await _spawn_spec(app, await _json_body(request))
    decision, workspace_id = principal.workspace_for(spec["workspace_id"])
    if decision is not Decision.ALLOWED or workspace_id is None:
        raise refusal(decision)
    try:
        task = await app[TASK_STORE].insert_task(
            workspace_id=workspace_id,
            task_type=spec["task_type"],
            params=spec["params"],
            spawned_by=principal.caller.key,
        )
    except NotFound as exc:  # a service granted every workspace named one that does not exist
        raise refusal(Decision.FORBIDDEN) from exc
    payload = task_payload(task)
    return json_response(
        {**payload, "task_id": payload["id"]},
        status=202,
        headers={"Location": f"/api/tasks/{payload['id']}"},
    )


async def _spawn_spec(app: web.Application, body: Any) -> dict[str, Any]:
    """The loaded body: a task type of the catalogue (422 naming the known ones otherwise),
    with params its JSON Schema accepts (422 with every field error otherwise)."""
    requested = body.get("task_type") if isinstance(body, dict) else None
    catalogue = await app[CATALOGUE].current(requested if isinstance(requested, str) else None)
    try:
        return catalogue.check_spawn(body)
    except SpawnRejected as exc:
        raise ApiError(422, "VALIDATION_ERROR", exc.message, fields=exc.fields) from exc


async def task_types(request: web.Request) -> web.Response:
    """`GET /api/task-types`: what may be spawned, whether a live runner serves it, and its
    params schema (any valid token may read it)."""
    app = request.app
    await authenticate(app[GATEWAY_STORE], token_hash(request, app[SETTINGS].session_cookie_name))
    catalogue = await app[CATALOGUE].current()
    return json_response({"task_types": [t.listing() for t in catalogue.types.values()]})


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: web.Request) -> Any:
    """The parsed body; 400 when it is not JSON (NaN and Infinity included: jsonb has none)."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].gateway_body_timeout_s):
            raw = await request.read()  # over client_max_size: aiohttp raises 413
    except TimeoutError:
        raise ApiError(
            408,
            "REQUEST_TIMEOUT",
            "The request body did not arrive in time",
            close=True,
        ) from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        # No parser text in the answer: it would echo the caller's input back.
        raise ApiError(400, "VALIDATION_ERROR", "The request body must be a JSON object") from exc
