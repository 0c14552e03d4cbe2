"""Requests aiohttp's own HTTP parser refuses, answered like every other error.

aiohttp answers a request it cannot parse (a header over 8,190 bytes, a stray CR or a control
character in a header, a bare LF, a folded line) before any middleware runs: it logs "Error
handling request" at ERROR with the parser's message, which quotes the offending header line
(credential and all), echoes that line in a text/plain 400, and names its own version in
`Server`. Here such a request gets one WARNING line naming only the error's class and the
peer, and the gateway's JSON error body with the security headers and a request id.

aiohttp offers no public hook for this answer, so the gateway's server makes its connection
handlers from `QuietRequestHandler` (gateway.connections): one of the two places that lean on
aiohttp's internals, checked by tests/security/test_hostile_client.py.
"""

from __future__ import annotations

import logging
from uuid import uuid4

from aiohttp import web, web_protocol
from aiohttp.web_request import BaseRequest

from praxiom_progress.gateway.access_log import REQUEST_ID_HEADER
from praxiom_progress.gateway.browsers import SECURITY_HEADERS
from praxiom_progress.gateway.errors import error_response

log = logging.getLogger("gateway.access")

#: Instead of aiohttp's own `Server: Python/3.x aiohttp/3.y`, on every answer.
SERVER_NAME = "praxiom-progress"


class QuietRequestHandler(web_protocol.RequestHandler):
    __slots__ = ()  # aiohttp's handler has slots; without these, each connection gets a dict

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's refusal (or a crash outside every middleware): no input in the log
        or the answer, only the error's class."""
        if request.writer.output_size > 0:  # an answer had begun: aiohttp's own handling
            return super().handle_error(request, status, exc, message)
        log.warning(
            "malformed request from %s refused: %s",
            request.remote,
            type(exc).__name__ if exc is not None else "error",
            extra={"action": "malformed_request", "status": status},
        )
        if status >= 500:
            response = error_response(500, "INTERNAL", "Internal error")
        else:
            response = error_response(status, "VALIDATION_ERROR", "Malformed HTTP request")
        response.headers.update(SECURITY_HEADERS)
        response.headers[REQUEST_ID_HEADER] = uuid4().hex
        response.headers["Server"] = SERVER_NAME
        response.force_close()
        return response


async def name_the_server(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: no library version on the wire."""
    response.headers["Server"] = SERVER_NAME
