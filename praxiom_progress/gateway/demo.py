"""The demo page (dev mode only: `create_app(settings, demo=True)`; production never serves it).

`GET /` and `GET /demo` serve one page that spawns the catalogued task types and follows each
with the spec's JavaScript client (EventSource with credentials). Visiting the page signs the
browser in: the session cookie gets a token of user `demo` in workspace `demo`, minted once and
reused while it stays valid. The page's script and style are files in `demo_static/`, served
from `/demo/static/`; nothing is loaded from anywhere else.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.keys import (
    CATALOGUE,
    DEMO_TEMPLATE,
    GATEWAY_STORE,
    SETTINGS,
    TASK_STORE,
)
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.spawning import TaskType
from praxiom_progress.taskstate.tokens import hash_token

STATIC_DIR = Path(__file__).with_name("demo_static")
STATIC_PREFIX = "/demo/static"
#: The files `/demo/static/` serves (the page's template is not one of them).
ASSETS: Mapping[str, str] = {
    "demo.js": "text/javascript",
    "demo.css": "text/css",
    "favicon.svg": "image/svg+xml",
}

DEMO_WORKSPACE = "demo"
DEMO_USER = "demo"
#: The demo token and its cookie expire together, a week after the visit that minted them.
DEMO_SESSION_S = 7 * 24 * 3600

#: Paces offered for `step_seconds`, fastest first: (value, label).
PACES: tuple[tuple[str, str], ...] = (
    ("0.2", "Fast — 0.2 s a step"),
    ("1", "Steady — 1 s a step"),
    ("2", "Slow — 2 s a step"),
    ("5", "Very slow — 5 s a step"),
)


def fail_points(task_type: TaskType) -> list[str]:
    """Where a type can be told to fail: the choices its params schema gives `fail_at` (the
    built-in types' step names, runner/builtin.py); none for a type without one."""
    properties = task_type.params_schema.get("properties")
    fail_at = properties.get("fail_at") if isinstance(properties, Mapping) else None
    choices = fail_at.get("enum") if isinstance(fail_at, Mapping) else None
    return [str(c) for c in choices] if isinstance(choices, list) else []


# The page may load only its own files and talk only to its own origin.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def setup(app: web.Application) -> None:
    """Add the demo routes to `app`."""
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    app[DEMO_TEMPLATE] = template
    app.router.add_get("/", page)
    app.router.add_get("/demo", page)
    app.router.add_get(STATIC_PREFIX + "/{name}", asset)


async def page(request: web.Request) -> web.Response:
    """The demo page; signs the browser in as the demo user unless its cookie is still good."""
    settings = request.app[SETTINGS]
    cookie_name = settings.session_cookie_name
    workspace_id = await _session_workspace(request, request.cookies.get(cookie_name, ""))
    new_token: str | None = None
    if workspace_id is None:
        issued = await AccountStore(request.app[TASK_STORE].db).create_token(
            workspace=DEMO_WORKSPACE, user=DEMO_USER, expires_in_s=DEMO_SESSION_S
        )
        new_token, workspace_id = issued.token, issued.workspace_id
    catalogue = await request.app[CATALOGUE].current()
    body = render(request.app[DEMO_TEMPLATE], list(catalogue.types.values()), workspace_id)
    response = web.Response(text=body, content_type="text/html", headers=_PAGE_HEADERS)
    if new_token is not None:
        response.set_cookie(
            cookie_name,
            new_token,
            max_age=DEMO_SESSION_S,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
    return response


async def _session_workspace(request: web.Request, token: str) -> UUID | None:
    """The workspace a still-valid session cookie spawns into; None means: sign in afresh.

    A cookie whose user belongs to several workspaces is replaced too: the page could not
    tell which one is the demo's.
    """
    token = token.strip()
    if not token or len(token) > 512 or not token.isprintable():
        return None
    principal = await request.app[GATEWAY_STORE].principal(hash_token(token))
    if principal is None:
        return None
    _, workspace_id = principal.workspace_for(None)  # None unless exactly one
    return workspace_id


def render(template: str, task_types: Sequence[TaskType], workspace_id: UUID) -> str:
    """The page: the template with the task types (the catalogue's), the paces and the
    script's settings."""
    config: dict[str, Any] = {
        "workspace_id": str(workspace_id),
        "task_types": [t.name for t in task_types],
        "fail_points": {t.name: fail_points(t) for t in task_types},
    }
    type_options = "\n".join(
        f'<option value="{html.escape(t.name)}">{html.escape(t.label)}</option>' for t in task_types
    )
    pace_options = "\n".join(
        f'<option value="{value}">{html.escape(label)}</option>' for value, label in PACES
    )
    return (
        template.replace("<!--TASK_TYPE_OPTIONS-->", type_options)
        .replace("<!--PACE_OPTIONS-->", pace_options)
        .replace("<!--DEMO_CONFIG-->", _script_json(config))
        .replace("<!--WORKSPACE_ID-->", html.escape(str(workspace_id)))
    )


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` that could end it."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC_DIR / name,
        headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
