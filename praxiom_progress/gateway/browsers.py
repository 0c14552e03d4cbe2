"""What protects a browser's session: the Origin check on cookie writes, and response headers.

The session cookie rides along on any request a page makes to the gateway, whichever site the
page is on. `SameSite` (set by the application that issues the cookie) stops most cross-site
requests from carrying it, but not requests from a sibling subdomain (the same site), so the
state-changing endpoints (`spawn`, `cancel`: every non-GET) also check `Origin` when the
cookie is the credential: it must be the gateway's own origin or one of
`CORS_ALLOWED_ORIGINS`, else 403. A request with `Authorization: Bearer` is not checked: a
page cannot make a browser add that header for another site without a preflight we refuse.

A cookie write without `Origin` is let through unless `Sec-Fetch-Site` says it is cross-site
or same-site: browsers send `Origin` on every cross-origin POST, so a request without it is
a same-origin one from an old browser or not from a browser at all (curl, a service).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from praxiom_progress.gateway.errors import ApiError
from praxiom_progress.gateway.keys import LIMIT_STATS

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_FETCH_SITES = frozenset({"cross-site", "same-site"})

#: On every response; task data is never cached (JSON answers already say `no-store`; the
#: stream keeps the spec's `no-cache`).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def cross_origin_refused() -> ApiError:
    return ApiError(403, "FORBIDDEN", "Cross-site requests with the session cookie are refused")


def check_origin(request: web.Request, cookie_name: str, allowed: frozenset[str]) -> None:
    """403 for a state-changing request whose credential is the session cookie and whose
    origin is neither ours nor allowed (gateway.front calls it for every request)."""
    if (
        request.method not in _SAFE_METHODS
        and hdrs.AUTHORIZATION not in request.headers
        and cookie_name in request.cookies
        and not _origin_allowed(request, allowed)
    ):
        request.app[LIMIT_STATS].cross_origin_refused += 1
        raise cross_origin_refused()


def own_origin(request: web.Request) -> str:
    """The origin the browser sees the gateway at (behind TLS-terminating nginx, by
    X-Forwarded-Proto; a page cannot set that header cross-site without a preflight)."""
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    return f"{scheme.lower()}://{request.host.lower()}"


def _origin_allowed(request: web.Request, allowed: frozenset[str]) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "").lower() not in _CROSS_FETCH_SITES
    origin = origin.strip().lower()
    return origin in allowed or origin == own_origin(request)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: on every answer, the stream's and errors' included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/tasks"):
        response.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
