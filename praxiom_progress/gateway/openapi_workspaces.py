"""The workspace stream's part of the OpenAPI document (gateway.openapi builds the rest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TEXT = {"type": "string"}
_WORKSPACE_ID = {
    "name": "workspace_id",
    "in": "path",
    "required": True,
    "description": "The workspace's id (anything that is not a UUID is simply not found: 404).",
    "schema": {"type": "string", "format": "uuid"},
}

_DESCRIPTION = (
    "A Server-Sent Events stream of every task of a workspace. Each event is one unnamed "
    "`data:` line holding a TaskPayload as compact JSON (the same bytes as that task's own "
    "stream), in any task's order; per task, versions never go down. `id:` is a mark, not a "
    "version: send it back as `Last-Event-ID` to get every task changed since (repeats are "
    "possible: keep the highest version per task). A block with `id:` and no `data:` moves the "
    "mark on without an event. The first write carries `retry:`. Comments (`: ping`) keep the "
    "connection alive. A terminal status does not end this stream; losing access does."
)

_EVENT = {
    "type": "object",
    "description": _DESCRIPTION,
    "properties": {
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/TaskPayload"},
        },
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The mark."},
        "event": {"const": "message", "description": "Unnamed: the default `message`."},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["id"],
}


def last_event_id_parameters(header: str) -> list[dict[str, Any]]:
    """Where a stream's client says what it last received: the header browsers send on
    reconnect (described by `header`), and the query parameter for clients without headers."""
    return [
        {"name": "Last-Event-ID", "in": "header", "description": header, "schema": _TEXT},
        {
            "name": "last_event_id",
            "in": "query",
            "description": "The same, for clients that cannot set headers.",
            "schema": _TEXT,
        },
    ]


def workspace_operations(
    errors: Callable[..., dict[str, Any]], security: list[dict[str, list[str]]]
) -> dict[str, dict[str, Any]]:
    """`path -> {method: operation}` for the workspace stream; `errors(*statuses)` gives the
    documented error answers."""
    return {
        "/api/workspaces/{workspace_id}/progress": {
            "get": {
                "operationId": "streamWorkspaceProgress",
                "summary": "Every task of a workspace, live, on one stream (Server-Sent Events): "
                "the tasks not finished and those finished within SSE_WORKSPACE_RECENT (at "
                "most SSE_WORKSPACE_MAX_TASKS, newest first), then every change.",
                "security": security,
                "parameters": [
                    _WORKSPACE_ID,
                    *last_event_id_parameters(
                        "The last `id:` received (browsers send it on reconnect): the stream "
                        "starts with every task changed since."
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The stream.",
                        "content": {"text/event-stream": {"schema": _EVENT}},
                    },
                    **errors(401, 403, 404, 429, 503),
                },
            }
        }
    }
