"""The gateway's one middleware: what every request passes through, in one coroutine.

An open stream keeps its request's middleware frames for as long as it lives: one coroutine
per middleware, and one of aiohttp's own on top when there is any. With ten thousand idle
streams that is memory per stream (benchmarked), so the steps, each kept in its module as a
plain function, are composed here into a single middleware, in the order they had as five:

1. a CORS preflight from an allowed origin is answered at once (gateway.cors), not logged;
2. the request gets its id and client address, and a log context (gateway.access_log);
3. an address over AUTH_FAILURES_PER_MINUTE 401s gets 429 before any lookup (gateway.limits);
4. a cookie write from a foreign origin gets 403 (gateway.browsers);
5. the handler; whatever it raises becomes its JSON error (gateway.errors), and a 401 answer
   counts against the address;
6. the access-log line, when the request (a stream: the stream) ends.

Steps 2 to 6 are a `Visit`. A handler named `inside` by `FrontDoor.middleware` (the progress
stream's) takes its own visit, in its own frame, which lives as long as the stream anyway:
the middleware hands such a request straight on, and keeps no frame of its own under it (a
third of a KiB a stream).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection

from aiohttp import web
from aiohttp.typedefs import Middleware

from praxiom_progress.gateway import access_log, browsers, cors
from praxiom_progress.gateway.errors import Handler, answer_for
from praxiom_progress.gateway.keys import AUTH_FAILURE_LIMITER, CLIENT_ADDRESSES
from praxiom_progress.taskstate.logs import enter_context, leave_context
from praxiom_progress.taskstate.settings import Settings


class FrontDoor:
    """The door of one app: its middleware, and the visits of the handlers that take their
    own (`inside`)."""

    def __init__(self, settings: Settings) -> None:
        self.cookie_name = settings.session_cookie_name
        self.origins = frozenset(settings.cors_allowed_origins)

    def visit(self, request: web.Request) -> Visit:
        return Visit(self, request)

    def middleware(self, *, inside: Collection[Handler] = ()) -> Middleware:
        origins, own_visit = self.origins, frozenset(inside)

        async def through(request: web.Request, handler: Handler) -> web.StreamResponse:
            visit = self.visit(request)
            try:
                visit.check()
                return visit.answered(await handler(request))
            except Exception as exc:
                return visit.failed(exc)
            finally:
                visit.leave()

        @web.middleware
        def front(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
            if origins and (preflight := cors.preflight_answer(request, origins)) is not None:
                return _ready(preflight)
            if handler in own_visit:
                return handler(request)
            return through(request, handler)

        return front


class Visit:
    """One request through the front door, steps 2 to 6: made as it arrives, `check`ed,
    then `answered` or `failed`, and always `leave`s (in a `finally`)."""

    __slots__ = ("_context", "_door", "_request", "_started", "_token", "address", "status")

    def __init__(self, door: FrontDoor, request: web.Request) -> None:
        request_id = access_log.request_id_for(request)
        request[access_log.REQUEST_ID] = request_id
        address = request.app[CLIENT_ADDRESSES].of(request)
        self.address = request[access_log.CLIENT_ADDRESS] = address
        self._door = door
        self._request = request
        self._started = time.perf_counter()
        self._context, self._token = enter_context(request_id=request_id)
        self.status = access_log.CLIENT_CLOSED

    def check(self) -> None:
        """Steps 3 and 4: 429 for an address over its 401s, 403 for a foreign cookie write."""
        self._request.app[AUTH_FAILURE_LIMITER].check(self.address)
        browsers.check_origin(self._request, self._door.cookie_name, self._door.origins)

    def answered(self, response: web.StreamResponse) -> web.StreamResponse:
        if response.status == 401:
            self._request.app[AUTH_FAILURE_LIMITER].spend(self.address)
        self.status = response.status
        return response

    def failed(self, exc: Exception) -> web.StreamResponse:
        """The JSON answer to what the handler raised; a redirect is raised again."""
        try:
            response = answer_for(self._request, exc)
        except web.HTTPException as redirect:
            self.status = redirect.status
            raise
        return self.answered(response)

    def leave(self) -> None:
        """Step 6. A cancelled stream still answered 200: its headers went out when it
        started."""
        request = self._request
        status = request.get(access_log.RESPONSE_STATUS, self.status)
        duration_s = time.perf_counter() - self._started
        access_log.log_access(request, status, duration_s, self._context)
        leave_context(self._token)


async def _ready(response: web.StreamResponse) -> web.StreamResponse:
    return response
