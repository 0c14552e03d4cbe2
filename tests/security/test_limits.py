"""Each limit reached, answered with its documented status, and counted in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse

from praxiom_progress.gateway.app import create_app
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.publisher import ProgressPublisher
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer
from tests.security.kit import assert_refused, make_scene, task_rows


async def metric(api: Any, name: str) -> float:
    text = await (await api.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}_total "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def open_stream(api: Any, task_id: object, token: str) -> ClientResponse:
    resp = await api.get(f"/api/tasks/{task_id}/progress", headers=bearer(token))
    if resp.status == 200:
        await resp.content.readuntil(b"\r\n\r\n")  # the first event: the stream is counted
    return resp


def retry_after(resp: ClientResponse) -> int:
    value = int(resp.headers["Retry-After"])
    assert value >= 1
    return value


async def test_streams_per_principal_over_the_cap_get_429_with_retry_after(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    api = await aiohttp_client(create_app(settings.replace(streams_per_principal=2)))
    scene = await make_scene(db, task_store)
    ann = scene.member.token
    bob = (await AccountStore(db).create_token(workspace="acme", user="carl")).token
    held = [await open_stream(api, scene.task_id, ann) for _ in range(2)]
    assert [r.status for r in held] == [200, 200]

    refused = await open_stream(api, scene.task_id, ann)
    await assert_refused(refused, 429, "RATE_LIMITED", scene.task_id)
    retry_after(refused)
    assert await metric(api, "praxiom_gateway_streams_refused_per_principal") == 1
    other = await open_stream(api, scene.task_id, bob)  # another principal is not affected
    assert other.status == 200

    held.pop().close()  # a slot frees when a stream ends
    await asyncio.sleep(0.3)
    again = await open_stream(api, scene.task_id, ann)
    assert again.status == 200
    for resp in (*held, other, again):
        resp.close()


async def test_a_full_gateway_answers_503_with_retry_after_so_the_balancer_tries_another(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    api = await aiohttp_client(create_app(settings.replace(gateway_max_streams=2)))
    scene = await make_scene(db, task_store)
    accounts = AccountStore(db)
    tokens = [(await accounts.create_token(workspace="acme", user=f"u{i}")).token for i in range(3)]
    held = [await open_stream(api, scene.task_id, token) for token in tokens[:2]]
    assert [r.status for r in held] == [200, 200]
    refused = await open_stream(api, scene.task_id, tokens[2])
    await assert_refused(refused, 503, "UNAVAILABLE", scene.task_id)
    retry_after(refused)
    assert await metric(api, "praxiom_gateway_streams_refused_full") == 1
    for resp in held:
        resp.close()


async def test_a_body_over_the_limit_gets_413_and_is_counted(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    api = await aiohttp_client(create_app(settings.replace(gateway_max_body_bytes=1000)))
    scene = await make_scene(db, task_store)
    before = await task_rows(db)
    small = {"task_type": "validation_kit", "params": {"s": "x" * 800}}
    assert (
        await api.post("/api/tasks/spawn", json=small, headers=bearer(scene.member.token))
    ).status == 202
    big = {"task_type": "validation_kit", "params": {"s": "x" * 1000}}
    resp = await api.post("/api/tasks/spawn", json=big, headers=bearer(scene.member.token))
    await assert_refused(resp, 413, "PAYLOAD_TOO_LARGE")
    assert len(await task_rows(db)) == len(before) + 1  # only the small one
    assert await metric(api, "praxiom_gateway_bodies_too_large") == 1


async def test_spawns_over_the_rate_get_429_with_retry_after_per_principal(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    api = await aiohttp_client(create_app(settings.replace(spawn_rate_limit=3)))
    scene = await make_scene(db, task_store)
    bob = (await AccountStore(db).create_token(workspace="acme", user="carl")).token
    body = {"task_type": "validation_kit"}
    answers = [
        (await api.post("/api/tasks/spawn", json=body, headers=bearer(scene.member.token))).status
        for _ in range(3)
    ]
    assert answers == [202, 202, 202]
    before = await task_rows(db)
    resp = await api.post("/api/tasks/spawn", json=body, headers=bearer(scene.member.token))
    await assert_refused(resp, 429, "RATE_LIMITED")
    assert 1 <= retry_after(resp) <= 20  # 3 a minute: one more every 20 s
    assert await task_rows(db) == before
    assert (await api.post("/api/tasks/spawn", json=body, headers=bearer(bob))).status == 202
    assert await metric(api, "praxiom_gateway_spawns_rate_limited") == 1


# -- slow request headers (a real socket: the production server settings) -------------------


@pytest.fixture
async def slow_gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    gateway = LiveGateway(settings.replace(gateway_header_timeout_s=1.0))
    await gateway.start()
    yield gateway
    await gateway.stop()


async def drip(port: int, request: bytes, every_s: float, limit_s: float) -> tuple[float, bytes]:
    """Send `request` one byte every `every_s`, then keep dripping header lines, until the
    server closes the connection; how long that took, and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = b""
    payload = request + b"X-Slow: 1\r\n" * 1000

    async def read_all() -> None:
        nonlocal answer
        answer = await reader.read()

    read = asyncio.create_task(read_all())
    try:
        for byte in payload:
            if read.done() or time.monotonic() - started > limit_s:
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, OSError):
                break
            await asyncio.sleep(every_s)
        await asyncio.wait_for(read, timeout=max(0.1, limit_s - (time.monotonic() - started)))
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def test_a_client_sending_headers_byte_by_byte_is_cut_off(
    slow_gateway: LiveGateway,
) -> None:
    port = int(slow_gateway.url.rsplit(":", 1)[1])
    took_s, answer = await drip(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0.05, 5.0)
    assert took_s < 2.0, took_s  # one GATEWAY_HEADER_TIMEOUT, plus slack
    assert answer == b""  # never answered: the request never completed


async def test_a_whole_request_sent_at_once_is_answered_on_the_same_settings(
    slow_gateway: LiveGateway,
) -> None:
    """The control: nothing else about the connection is cut short."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(slow_gateway.url.rsplit(":", 1)[1])
    )
    await asyncio.sleep(0.5)  # within the header timeout
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


async def test_an_open_stream_outlives_the_header_timeout(
    slow_gateway: LiveGateway, db: Database, task_store: TaskStore, redis_client: Any
) -> None:
    """The stream still carries a new event after twice the header timeout (the first event,
    already in the buffer, would prove nothing: it outlives a closed connection)."""
    scene = await make_scene(db, task_store)
    port = int(slow_gateway.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/tasks/{scene.task_id}/progress HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {scene.member.token}\r\n\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b'"status":"pending"' in first
        await asyncio.sleep(2.0)  # twice the header timeout: nothing may happen meanwhile
        cancelled = await task_store.cancel_task(scene.task_id)
        assert await ProgressPublisher(redis_client).publish_tasks([cancelled]) > 0
        # (a keep-alive comment may come first)
        await asyncio.wait_for(reader.readuntil(b'"status":"cancelled"'), 5)
    finally:
        writer.close()


async def test_a_body_that_trickles_in_is_cut_off_with_408(
    settings: Settings, db: Database, task_store: TaskStore
) -> None:
    """Headers in time, then the body a byte at a time, forever: refused at
    GATEWAY_BODY_TIMEOUT, nothing created."""
    scene = await make_scene(db, task_store)
    before = await task_rows(db)
    gateway = LiveGateway(settings.replace(gateway_body_timeout_s=0.5))
    await gateway.start()
    try:
        host, port = gateway.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api/tasks/spawn HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {scene.member.token}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        trickle = asyncio.create_task(_trickle(writer))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            assert time.monotonic() - started < 3
            closed = await asyncio.wait_for(reader.read(), 5)  # and the connection ends
        finally:
            trickle.cancel()
            writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b'"REQUEST_TIMEOUT"' in body and closed == b""
    finally:
        await gateway.stop()
    assert await task_rows(db) == before, "a cut-off spawn created a task"


async def _trickle(writer: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(0.1)
        writer.write(b" ")
