"""Every refusal the gateway sends: a status code and `{"error": {"code", "message"}}`; and
`answer_for`, which turns whatever a request raised into one (gateway.front)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.taskstate.errors import InvalidData, StoreUnavailable
from praxiom_progress.taskstate.payloads import encode_payload

log = logging.getLogger("gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Codes for the statuses aiohttp itself raises (unknown route, wrong method, huge body).
_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}

_NO_STORE = {"Cache-Control": "no-store"}


class ApiError(Exception):
    """Raised by a handler; the middleware turns it into the JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.close = close  # end the connection after the answer (its request was not read)
        self.extra = extra


def unauthenticated(message: str = "A valid token is required") -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message)


_REFUSALS: dict[Decision, ApiError] = {
    Decision.UNAUTHENTICATED: unauthenticated(),
    Decision.NOT_FOUND: ApiError(404, "NOT_FOUND", "No such task"),
    Decision.FORBIDDEN: ApiError(403, "FORBIDDEN", "You are not a member of this task's workspace"),
    Decision.READ_ONLY: ApiError(403, "FORBIDDEN", "This token may only read tasks"),
    Decision.WORKSPACE_REQUIRED: ApiError(
        422,
        "VALIDATION_ERROR",
        "workspace_id is required unless you may act in exactly one workspace",
        fields={"workspace_id": ["Missing data for required field."]},
    ),
}


def refusal(decision: Decision) -> ApiError:
    """The one place a refused `Decision` becomes its HTTP error (a fresh one each time)."""
    known = _REFUSALS[decision]  # KeyError for ALLOWED: refusing an allowed call is a bug
    return ApiError(known.status, known.code, known.message, **known.extra)


def too_many(message: str, retry_after_s: int) -> ApiError:
    return ApiError(429, "RATE_LIMITED", message, headers={"Retry-After": str(retry_after_s)})


def not_found(what: str = "task") -> ApiError:
    return ApiError(404, "NOT_FOUND", f"No such {what}")


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Every JSON answer: the payload's own encoder, and never cached (it is task data)."""
    return web.Response(
        text=encode_payload(body),
        status=status,
        content_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra)
    return json_response(body, status=status, headers=headers)


def answer_for(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer to an exception a request raised (gateway.front calls it for every
    request); a redirect (an HTTPException under 400) is raised again, for aiohttp to send."""
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        headers.update(exc.headers)
        response = error_response(exc.status, exc.code, exc.message, headers=headers, **exc.extra)
        if exc.close:
            response.force_close()
        return response
    if isinstance(exc, InvalidData):
        log.info("PostgreSQL refused a value: %s", exc, extra={"action": "invalid_data"})
        return error_response(422, "VALIDATION_ERROR", "A value could not be stored")
    if isinstance(exc, StoreUnavailable):
        log.warning("PostgreSQL unavailable: %s", exc, extra={"action": "db_unavailable"})
        return error_response(
            503,
            "UNAVAILABLE",
            "The task store is unavailable; retry shortly",
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _CODES.get(exc.status, "ERROR")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason, headers=headers)
    log.error(
        "unhandled error on %s %s",
        request.method,
        request.path,
        exc_info=exc,
        extra={"action": "internal_error"},
    )
    return error_response(500, "INTERNAL", "Internal error")
