"""One access-log line per request, and a request id on every line the request causes.

The id is the caller's `X-Request-ID` when it is a sane token (so a trace can
cross services), else a new one; it is echoed in the response's
`X-Request-ID`. The line names the principal (the user id, once the token was
checked), never the token, and the path without its query string. A stream's
line is written when the stream ends, so its duration is the stream's life.
"""

from __future__ import annotations

import logging
import re
from uuid import uuid4

from aiohttp import web

from praxiom_progress.taskstate.logs import annotate

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
#: Logged for a request whose client left before an answer was sent (nginx's convention).
CLIENT_CLOSED = 499

REQUEST_ID = web.RequestKey("request_id", str)
#: The client's address (behind a trusted proxy, the one it names): logs and limits use it.
CLIENT_ADDRESS = web.RequestKey("client_address", str)
#: The status whose headers went out (set when the response is prepared).
RESPONSE_STATUS = web.RequestKey("response_status", int)


def request_id_for(request: web.Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return incoming if _SANE_REQUEST_ID.match(incoming) else uuid4().hex


def note_principal(key: str) -> None:
    """Name the authenticated caller on the current request's log lines (the user id, or
    `service:<name>`; never the token)."""
    annotate(principal=key)


def log_access(
    request: web.Request, status: int, duration_s: float, context: dict[str, object]
) -> None:
    """The request's line (gateway.front writes it when the request, or stream, ends)."""
    duration_ms = round(duration_s * 1000, 1)
    principal = context.get("principal")
    path = request.rel_url.raw_path  # still percent-encoded: no line breaks in a text log
    fields: dict[str, object] = {
        "action": "request",
        "method": request.method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "remote": request[CLIENT_ADDRESS],
    }
    task_id = request.match_info.get("task_id")
    if task_id is not None:
        fields["task_id"] = task_id
    log.info(
        "%s %s %d %.1fms%s",
        request.method,
        path,
        status,
        duration_ms,
        f" user={principal}" if principal else "",
        extra=fields,
    )


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the id goes out with the headers (a stream's, too)."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
        request[RESPONSE_STATUS] = response.status
