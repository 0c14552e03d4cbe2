"""`Client` against a stub gateway: each call's request and answer, the typed refusals, and
the retries of a 503 or 429 (first stream connection included) that honour `Retry-After`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from praxiom_client import (
    Client,
    Conflict,
    Forbidden,
    Invalid,
    Refused,
    RetryPolicy,
    Unreachable,
)
from tests.conftest import free_port

TASK = "b4c5d6e7-8901-2345-abcd-ef0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def payload(version: int, status: str = "running") -> dict[str, Any]:
    return {"id": TASK, "status": status, "version": version, "progress_pct": 10 * version}


def busy(status: int, retry_after: str | None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"code": "UNAVAILABLE", "message": "Try later"}}
    return web.json_response(body, status=status, headers=headers)


class Stub:
    """A gateway whose answers are queued per path; records each request it got."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Handler]] = {}
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.method, request.path, dict(request.headers), body))
        return await self.answers[request.path].pop(0)(request)

    def answer(self, path: str, *handlers: Handler) -> None:
        self.answers.setdefault(path, []).extend(handlers)


@pytest.fixture
async def stub(aiohttp_server: Any) -> tuple[Stub, str]:
    fake = Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    return fake, str(server.make_url("")).rstrip("/")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def constant(response: Callable[[], web.StreamResponse]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return response()

    return handler


async def test_each_call_sends_its_request_with_the_token_and_returns_the_json(
    stub: tuple[Stub, str],
) -> None:
    fake, url = stub
    fake.answer(
        "/api/tasks/spawn",
        constant(lambda: web.json_response({**payload(1), "task_id": TASK}, status=202)),
    )
    fake.answer(f"/api/tasks/{TASK}/status", constant(lambda: web.json_response(payload(2))))
    fake.answer(
        f"/api/tasks/{TASK}", constant(lambda: web.json_response({**payload(2), "params": {}}))
    )
    fake.answer(
        f"/api/tasks/{TASK}/cancel",
        constant(lambda: web.json_response(payload(3, "cancelled"), status=202)),
    )
    async with Client(url + "/", "pxp_secret") as client:
        spawned = await client.spawn("kit", workspace_id=TASK, params={"n": 1})
        assert spawned["task_id"] == TASK
        assert (await client.status(TASK))["version"] == 2
        assert (await client.record(TASK))["params"] == {}
        assert (await client.cancel(TASK))["status"] == "cancelled"
    methods = [(method, path) for method, path, _, _ in fake.seen]
    assert methods == [
        ("POST", "/api/tasks/spawn"),
        ("GET", f"/api/tasks/{TASK}/status"),
        ("GET", f"/api/tasks/{TASK}"),
        ("POST", f"/api/tasks/{TASK}/cancel"),
    ]
    assert fake.seen[0][3] == {"task_type": "kit", "workspace_id": TASK, "params": {"n": 1}}
    assert all(headers["Authorization"] == "Bearer pxp_secret" for _, _, headers, _ in fake.seen)


async def test_refusals_are_typed_and_carry_the_gateway_s_details(stub: tuple[Stub, str]) -> None:
    fake, url = stub
    fields = {"params": {"step_seconds": ["Not a number"]}}
    fake.answer(
        "/api/tasks/spawn",
        constant(
            lambda: web.json_response(
                {"error": {"code": "VALIDATION_ERROR", "message": "No"}, "fields": fields},
                status=422,
            )
        ),
        constant(
            lambda: web.json_response({"error": {"code": "FORBIDDEN", "message": "No"}}, status=403)
        ),
    )
    fake.answer(
        f"/api/tasks/{TASK}/cancel",
        constant(
            lambda: web.json_response(
                {"error": {"code": "CONFLICT", "message": "Done"}, "task": payload(4, "completed")},
                status=409,
            )
        ),
    )
    async with Client(url, "pxp_t") as client:
        with pytest.raises(Invalid) as invalid:
            await client.spawn("kit", params={"step_seconds": "x"})
        assert invalid.value.fields == fields
        with pytest.raises(Forbidden):
            await client.spawn("kit")
        with pytest.raises(Conflict) as conflict:
            await client.cancel(TASK)
        assert conflict.value.task is not None and conflict.value.task["status"] == "completed"


async def test_a_busy_gateway_is_retried_never_sooner_than_its_retry_after(
    stub: tuple[Stub, str],
) -> None:
    fake, url = stub
    path = f"/api/tasks/{TASK}/status"
    fake.answer(
        path,
        constant(lambda: busy(503, "3")),
        constant(lambda: busy(429, None)),
        constant(lambda: web.json_response(payload(5))),
    )
    sleeps, retries = Sleeps(), []
    policy = RetryPolicy(first_delay_s=0.5, jitter=0.5)
    client = Client(
        url, "pxp_t", policy=policy, sleep=sleeps, on_retry=lambda *a: retries.append(a)
    )
    async with client:
        assert (await client.status(TASK))["version"] == 5
    assert len(sleeps.delays) == 2 and sleeps.delays[0] == 3.0  # Retry-After, not the backoff
    assert 0.5 <= sleeps.delays[1] <= 2.0  # no Retry-After: the jittered backoff
    assert [reason for _, _, reason in retries] == [
        "503 Service Unavailable",
        "429 Too Many Requests",
    ]


async def test_a_busy_gateway_that_stays_busy_or_asks_for_too_long_is_a_refusal(
    stub: tuple[Stub, str],
) -> None:
    fake, url = stub
    path = f"/api/tasks/{TASK}/status"
    fake.answer(path, *[constant(lambda: busy(503, "0"))] * 3, constant(lambda: busy(429, "3600")))
    sleeps = Sleeps()
    async with Client(url, "pxp_t", policy=RetryPolicy(max_failures=3), sleep=sleeps) as client:
        with pytest.raises(Refused) as stayed:
            await client.status(TASK)
        assert stayed.value.status == 503 and len(sleeps.delays) == 2
        with pytest.raises(Refused) as too_long:
            await client.status(TASK)
        assert too_long.value.status == 429 and len(sleeps.delays) == 2  # no wait at all


async def test_nothing_listening_is_unreachable_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(url, "pxp_t") as client:
        with pytest.raises(Unreachable) as error:
            await client.status(TASK)
    assert error.value.url == url and "refused" in error.value.reason.lower()
    assert str(error.value).startswith(f"cannot reach {url}: ")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in (payload(1), payload(2, "completed")):
        await response.write(f"id: {event['version']}\ndata: {json.dumps(event)}\n\n".encode())
    return response


async def test_watch_waits_out_a_busy_first_connection_then_follows_the_stream(
    stub: tuple[Stub, str],
) -> None:
    fake, url = stub
    fake.answer(f"/api/tasks/{TASK}/progress", constant(lambda: busy(503, "2")), _stream)
    sleeps = Sleeps()
    async with Client(url, "pxp_t", sleep=sleeps) as client:
        received = [p async for p in client.watch(TASK)]
    assert [p["version"] for p in received] == [1, 2]
    assert sleeps.delays == [2.0]


async def test_watch_gives_up_on_a_first_connection_that_stays_busy_with_the_refusal(
    stub: tuple[Stub, str],
) -> None:
    fake, url = stub
    fake.answer(f"/api/tasks/{TASK}/progress", *[constant(lambda: busy(503, None))] * 2)
    async with Client(url, "pxp_t", policy=RetryPolicy(max_failures=2), sleep=Sleeps()) as client:
        with pytest.raises(Refused) as error:
            [p async for p in client.watch(TASK)]
    assert error.value.status == 503 and error.value.code == "UNAVAILABLE"
