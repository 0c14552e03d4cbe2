"""CORS for the allowed origins only, with credentials: echoed origin (never `*`),
`Access-Control-Allow-Credentials`, `Vary: Origin`, preflights for spawn and cancel, and the
headers on the SSE stream too."""

from __future__ import annotations

from typing import Any

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer, spawn

APP = "http://app.example.com"
OTHER = "http://evil.example.com"


@pytest.fixture
async def cors_api(aiohttp_client: Any, settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings.replace(cors_allowed_origins=(APP,))))


def _vary(response: Any) -> set[str]:
    return {v.strip() for v in response.headers.get("Vary", "").split(",")}


async def test_an_allowed_origin_is_echoed_with_credentials(
    cors_api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "research")
    response = await cors_api.get(
        f"/api/tasks/{task_id}/status", headers={**bearer(member.token), "Origin": APP}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in _vary(response)
    assert "Location" in response.headers["Access-Control-Expose-Headers"]


async def test_the_stream_carries_the_cors_headers(
    cors_api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "research")
    await task_store.cancel_task(task_id)
    response = await cors_api.get(
        f"/api/tasks/{task_id}/progress", headers={**bearer(member.token), "Origin": APP}
    )
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in _vary(response)
    assert '"status":"cancelled"' in await response.text()


async def test_errors_carry_them_too_so_a_page_can_read_them(cors_api: Any) -> None:
    response = await cors_api.get("/api/tasks/nope/status", headers={"Origin": APP})
    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == APP


async def test_another_origin_gets_no_cors_headers(cors_api: Any, member: IssuedToken) -> None:
    response = await cors_api.get("/healthz", headers={"Origin": OTHER})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in _vary(response)


@pytest.mark.parametrize("path", ["/api/tasks/spawn", "/api/tasks/{id}/cancel"])
async def test_preflights_for_spawn_and_cancel_are_answered(cors_api: Any, path: str) -> None:
    path = path.replace("{id}", "8d6f1f4e-6b8e-4c1e-9a55-4f3c3e0b7a10")
    response = await cors_api.options(
        path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed and "authorization" in allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


async def test_a_preflight_is_refused_for_other_origins_methods_and_paths(cors_api: Any) -> None:
    other = await cors_api.options(
        "/api/tasks/spawn", headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"}
    )
    assert other.status == 405
    assert "Access-Control-Allow-Origin" not in other.headers
    wrong_method = await cors_api.options(
        "/api/tasks/spawn", headers={"Origin": APP, "Access-Control-Request-Method": "DELETE"}
    )
    assert wrong_method.status == 405
    assert (await wrong_method.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
    nowhere = await cors_api.options(
        "/api/nowhere", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
    )
    assert nowhere.status == 404


async def test_no_origins_configured_means_no_cors_at_all(api: Any) -> None:
    response = await api.get("/healthz", headers={"Origin": APP})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = await api.options(
        "/api/tasks/spawn", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 405
