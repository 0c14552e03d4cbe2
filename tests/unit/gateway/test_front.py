"""gateway.front, the one middleware, on a real socket: an unexpected error becomes a JSON
500 with its traceback in the log (never in the answer), a redirect passes through, and each
gets its access line and request id."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from praxiom_progress.gateway import limits
from praxiom_progress.gateway.access_log import echo_request_id
from praxiom_progress.gateway.front import FrontDoor
from praxiom_progress.gateway.keys import CLIENT_ADDRESSES
from praxiom_progress.gateway.remote import ClientAddresses
from praxiom_progress.taskstate.settings import Settings


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    settings = Settings()

    async def broken(request: web.Request) -> web.StreamResponse:
        raise KeyError("secret detail")

    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/elsewhere")

    app = web.Application(middlewares=[FrontDoor(settings).middleware()])
    app[CLIENT_ADDRESSES] = ClientAddresses(())
    limits.setup(app, settings)
    app.on_response_prepare.append(echo_request_id)
    app.router.add_get("/broken", broken)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listener).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    await runner.cleanup()


async def test_an_unexpected_error_is_a_json_500_logged_with_its_traceback(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/broken") as r:
        assert r.status == 500
        assert await r.json() == {"error": {"code": "INTERNAL", "message": "Internal error"}}
        assert len(r.headers["X-Request-ID"]) == 32
    [error] = [rec for rec in caplog.records if rec.getMessage().startswith("unhandled error")]
    assert error.exc_info is not None and error.exc_info[0] is KeyError
    access = [rec for rec in caplog.records if getattr(rec, "action", "") == "request"]
    assert [(rec.status, rec.path) for rec in access] == [(500, "/broken")]  # type: ignore[attr-defined]


async def test_a_redirect_passes_through_with_its_access_line(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/moved", allow_redirects=False) as r,
    ):
        assert r.status == 302 and r.headers["Location"] == "/elsewhere"
    access = [rec for rec in caplog.records if getattr(rec, "action", "") == "request"]
    assert [(rec.status, rec.path) for rec in access] == [(302, "/moved")]  # type: ignore[attr-defined]
