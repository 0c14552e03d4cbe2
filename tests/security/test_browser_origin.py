"""Cookies and browsers: a hostile page cannot spawn or cancel with a visitor's cookie, and
every response carries the security headers."""

from __future__ import annotations

from typing import Any

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import LIMIT_STATS
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer
from tests.security.kit import assert_refused, cookie, make_scene, task_rows

APP = "https://app.example.com"
EVIL = "https://evil.example"


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings.replace(cors_allowed_origins=(APP,))))


def own(api: Any) -> str:
    return str(api.make_url("/")).rstrip("/")


async def write(api: Any, what: str, task_id: object, headers: dict[str, str]) -> Any:
    if what == "spawn":
        return await api.post(
            "/api/tasks/spawn", json={"task_type": "validation_kit"}, headers=headers
        )
    return await api.post(f"/api/tasks/{task_id}/cancel", headers=headers)


@pytest.mark.parametrize("what", ["spawn", "cancel"])
@pytest.mark.parametrize(
    "origin_headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},  # sandboxed frames, cross-origin redirects
        {"Origin": "http://app.example.com"},  # the allowed host, but not its scheme
        {"Sec-Fetch-Site": "cross-site"},  # no Origin, but the browser says where it came from
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_a_cross_site_post_with_the_cookie_is_refused(
    what: str, origin_headers: dict[str, str], api: Any, db: Database, task_store: TaskStore
) -> None:
    scene = await make_scene(db, task_store)
    before = await task_rows(db)
    resp = await write(api, what, scene.task_id, {**cookie(scene.member.token), **origin_headers})
    await assert_refused(resp, 403, "FORBIDDEN", scene.task_id, scene.workspace_id)
    assert await task_rows(db) == before
    assert api.server.app[LIMIT_STATS].cross_origin_refused == 1


@pytest.mark.parametrize("what", ["spawn", "cancel"])
@pytest.mark.parametrize("source", ["own origin", "allowed origin", "no origin", "bearer"])
async def test_same_origin_allowed_origins_and_bearer_tokens_may_write(
    what: str, source: str, api: Any, db: Database, task_store: TaskStore
) -> None:
    scene = await make_scene(db, task_store)
    token = scene.member.token
    headers = {
        "own origin": {**cookie(token), "Origin": own(api), "Sec-Fetch-Site": "same-origin"},
        "allowed origin": {**cookie(token), "Origin": APP},
        "no origin": cookie(token),  # not a browser's cross-site request (curl, a service)
        "bearer": {**bearer(token), "Origin": EVIL},  # a page cannot make a browser send this
    }[source]
    resp = await write(api, what, scene.task_id, headers)
    assert resp.status == 202, await resp.text()


async def test_reads_with_the_cookie_are_not_origin_checked(
    api: Any, db: Database, task_store: TaskStore
) -> None:
    """EventSource and status reads change nothing; CORS decides whether a page may read them."""
    scene = await make_scene(db, task_store)
    resp = await api.get(
        f"/api/tasks/{scene.task_id}/status", headers={**cookie(scene.member.token), "Origin": EVIL}
    )
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers  # and the page may not read it


@pytest.mark.parametrize(
    ("path", "authorized"),
    [
        ("/api/tasks/{id}/status", True),
        ("/api/tasks/{id}", True),
        ("/api/tasks/{id}/status", False),
        ("/api/tasks/{id}/progress", True),
        ("/api/tasks/nope/nothing", True),
        ("/healthz", False),
    ],
)
async def test_every_response_carries_nosniff_and_task_data_is_never_cached(
    path: str, authorized: bool, api: Any, db: Database, task_store: TaskStore
) -> None:
    scene = await make_scene(db, task_store)
    headers = bearer(scene.member.token) if authorized else {}
    resp = await api.get(path.format(id=scene.task_id), headers=headers)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    if path.startswith("/api/tasks"):
        expected = "no-cache" if path.endswith("/progress") else "no-store"  # the spec's header
        assert resp.headers["Cache-Control"] == expected
    resp.close()
