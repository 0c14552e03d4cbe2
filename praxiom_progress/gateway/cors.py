"""CORS for browsers on other origins (`CORS_ALLOWED_ORIGINS`), with credentials.

The spec's client opens `EventSource(url, {withCredentials: true})`, so an allowed origin is
echoed back exactly, never `*` (browsers refuse `*` with credentials), with
`Access-Control-Allow-Credentials: true` and `Vary: Origin`. Preflights (OPTIONS, for spawn and
cancel's JSON bodies) are answered here (`preflight_answer`, called by gateway.front); the
headers of every other response are added in `on_response_prepare`, which also reaches the SSE
stream, whose handler sends its headers itself before any middleware could see the response.

aiohttp-cors would need a per-route registration (and its own wrapper around every route) for
what is one allow-list and two hooks here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import hdrs, web

#: Request headers a page may send: auth, JSON bodies, and the stream's resume point.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID")
#: Response headers a page may read besides the safelisted ones.
EXPOSED_HEADERS = ("Location", "Retry-After")
#: How long a browser may cache a preflight answer.
PREFLIGHT_MAX_AGE_S = 600


def setup(app: web.Application, allowed_origins: Collection[str]) -> None:
    """Add CORS headers to `app`'s answers; with no origins allowed, add nothing (same-origin
    only). Preflights are answered by `preflight_answer`, which gateway.front calls."""
    if allowed_origins:
        app.on_response_prepare.append(_cors_headers(frozenset(allowed_origins)))


def preflight_answer(request: web.Request, origins: frozenset[str]) -> web.Response | None:
    """The 204 to a preflight from an allowed origin for a method the resource answers;
    None: not a preflight we answer (an unknown resource gets its 404, a method it does not
    answer its 405 with the Allow header, as any other request)."""
    if not _is_preflight(request) or request.headers.get(hdrs.ORIGIN) not in origins:
        return None
    routing_error = request.match_info.http_exception
    if routing_error is not None and routing_error.status != 405:
        return None  # no such resource: its own 404
    allowed = _allowed_methods(request)
    method = request.headers[hdrs.ACCESS_CONTROL_REQUEST_METHOD].upper()
    if method not in allowed:
        return None  # the ordinary 405 with its Allow header
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(allowed)),
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
            hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
        },
    )


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def _allowed_methods(request: web.Request) -> set[str]:
    """The methods the requested resource answers (from the router's 405, or the route)."""
    routing_error = request.match_info.http_exception
    if isinstance(routing_error, web.HTTPMethodNotAllowed):
        return set(routing_error.allowed_methods)
    route = request.match_info.route
    return {route.method} if route.method != hdrs.METH_ANY else set()


def _cors_headers(
    origins: frozenset[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        vary = {v.strip() for v in response.headers.get(hdrs.VARY, "").split(",") if v.strip()}
        response.headers[hdrs.VARY] = ", ".join(sorted(vary | {"Origin"}))
        origin = request.headers.get(hdrs.ORIGIN)
        if origin not in origins:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        if not _is_preflight(request):
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)

    return add
