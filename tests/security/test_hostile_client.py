"""Malformed requests with a real token inside, sent through raw sockets (no HTTP library to
tidy them up): the token reaches no log line and no response, and the refusal looks like
every other error of the gateway (JSON, security headers, a request id, no library version).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway
from tests.log_capture import captured_logs
from tests.security.kit import make_scene

#: What aiohttp's parser refuses, each carrying the token: `{token}` is replaced.
MALFORMED = {
    "authorization-over-8190-bytes": "Authorization: Bearer {token}{pad}\r\n",
    "cookie-over-8190-bytes": "Cookie: praxiom_session={token}; filler={pad}\r\n",
    "stray-cr-after-token": "Authorization: Bearer {token}\r\r\n",
    "control-character": "Authorization: Bearer {token}\x01\r\n",
    "bare-lf": "Authorization: Bearer {token}\n",
    "folded-header-line": "Authorization: Bearer\r\n {token}\r\n",
    "nul-in-cookie": "Cookie: praxiom_session={token}\x00\r\n",
}


async def _raw(url: str, request: bytes) -> bytes:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)  # the gateway closes after a 400
    finally:
        writer.close()


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_request_leaks_no_token_and_answers_like_every_error(
    case: str, settings: Settings, db: Database
) -> None:
    issued = await AccountStore(db).create_token(workspace="acme", user="ann")
    token = issued.token
    header = MALFORMED[case].format(token=token, pad="x" * 8200)
    request = (
        f"GET /api/tasks/00000000-0000-0000-0000-000000000000/status HTTP/1.1\r\n"
        f"Host: gateway\r\n{header}\r\n"
    ).encode("latin-1")
    gateway = LiveGateway(settings)
    await gateway.start()
    try:
        with captured_logs() as logs:
            answer = await _raw(gateway.url, request)
            await asyncio.sleep(0.1)  # let a late log line land
    finally:
        await gateway.stop()
    assert token.encode() not in answer, answer[:500]
    assert token not in logs.everything(), logs.everything()[:2000]
    status, headers, body = _split(answer)
    assert status == 400, answer[:300]
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers.get("x-request-id")
    assert "aiohttp" not in headers.get("server", "").lower()
    assert "malformed_request" in logs.everything()


async def test_a_well_formed_answer_names_no_library_version(
    live_gateway: LiveGateway,
) -> None:
    answer = await _raw(
        live_gateway.url, b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
    )
    status, headers, _ = _split(answer)
    assert status == 200 and "aiohttp" not in headers["server"].lower()


@pytest.mark.parametrize("junk", ["²", "①", "4" * 4301, "-1", "1e9"])
async def test_a_junk_last_event_id_is_ignored_not_a_500(
    junk: str, settings: Settings, db: Database
) -> None:
    """Digits only: `isdigit()` took '²' and int() then failed (a 500 with a traceback)."""
    scene = await make_scene(db, TaskStore(db))
    request = (
        f"GET /api/tasks/{scene.task_id}/progress HTTP/1.1\r\nHost: g\r\n"
        f"Authorization: Bearer {scene.member.token}\r\nLast-Event-ID: {junk}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    gateway = LiveGateway(settings)
    await gateway.start()
    try:
        parts = urlsplit(gateway.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the first event
        writer.close()
    finally:
        await gateway.stop()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"data: {" in first


#: Raw stream requests a browser never sends, each with the answer the front door gives every
#: route: (request line and headers after the Host line, status, error code).
STREAM_REFUSALS = {
    "no-credential": ("GET /api/tasks/{task}/progress", "", 401, "UNAUTHENTICATED"),
    "basic-scheme": ("GET /api/tasks/{task}/progress", "Authorization: Basic {token}\r\n", 401,
                     "UNAUTHENTICATED"),
    "forged-token": ("GET /api/tasks/{task}/progress", "Authorization: Bearer pxp_{pad}\r\n",
                     401, "UNAUTHENTICATED"),
    "malformed-task-id": ("GET /api/tasks/..%2f..%2fetc/progress",
                          "Authorization: Bearer {token}\r\n", 404, "NOT_FOUND"),
    "no-such-task": ("GET /api/tasks/00000000-0000-0000-0000-000000000000/progress",
                     "Authorization: Bearer {token}\r\n", 404, "NOT_FOUND"),
    "post-to-the-stream": ("POST /api/tasks/{task}/progress", "Authorization: Bearer {token}\r\n"
                           "Content-Length: 0\r\n", 405, "METHOD_NOT_ALLOWED"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(STREAM_REFUSALS))
async def test_a_refused_stream_request_is_answered_and_logged_like_any_other(
    case: str, settings: Settings, db: Database
) -> None:
    """The stream handler takes its own front-door visit (gateway.front): its refusals get the
    same JSON error, request id and headers as every route's, and one access line each."""
    scene = await make_scene(db, TaskStore(db))
    line, headers, status, code = STREAM_REFUSALS[case]
    token = scene.member.token
    request = (
        f"{line.format(task=scene.task_id)} HTTP/1.1\r\nHost: g\r\n"
        f"{headers.format(token=token, pad='x' * 40)}Connection: close\r\n\r\n"
    ).encode()
    gateway = LiveGateway(settings)
    await gateway.start()
    try:
        with captured_logs() as logs:
            answer = await _raw(gateway.url, request)
            await asyncio.sleep(0.1)  # let the access line land
    finally:
        await gateway.stop()
    got, answer_headers, body = _split(answer)
    assert got == status, answer[:300]
    assert answer_headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == code
    assert answer_headers["x-content-type-options"] == "nosniff"
    assert answer_headers.get("x-request-id")
    assert [line["status"] for line in logs.access()] == [status]
    assert token not in logs.everything()
