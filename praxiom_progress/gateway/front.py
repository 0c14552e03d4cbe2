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
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from praxiom_progress.gateway import access_log, browsers, cors
from praxiom_progress.gateway.errors import Handler, answer_for
from praxiom_progress.gateway.keys import AUTH_FAILURE_LIMITER, CLIENT_ADDRESSES
from praxiom_progress.taskstate.logs import enter_context, leave_context
from praxiom_progress.taskstate.settings import Settings


def front_door(settings: Settings) -> Middleware:
    cookie_name = settings.session_cookie_name
    origins = frozenset(settings.cors_allowed_origins)

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        if origins and (preflight := cors.preflight_answer(request, origins)) is not None:
            return preflight
        app = request.app
        request_id = access_log.request_id_for(request)
        request[access_log.REQUEST_ID] = request_id
        address = request[access_log.CLIENT_ADDRESS] = app[CLIENT_ADDRESSES].of(request)
        limiter = app[AUTH_FAILURE_LIMITER]
        started = time.perf_counter()
        context, token = enter_context(request_id=request_id)
        status = access_log.CLIENT_CLOSED
        try:
            try:
                limiter.check(address)
                browsers.check_origin(request, cookie_name, origins)
                response = await handler(request)
            except Exception as exc:
                response = answer_for(request, exc)  # a redirect is raised again
            if response.status == 401:
                limiter.spend(address)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            # A cancelled stream still answered 200: its headers went out when it started.
            status = request.get(access_log.RESPONSE_STATUS, status)
            access_log.log_access(request, status, time.perf_counter() - started, context)
            leave_context(token)

    return front
