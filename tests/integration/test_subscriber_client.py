"""`praxiom_client.watch_task` against a live gateway: it ends on the terminal payload, survives
a cut connection by resuming with Last-Event-ID, and refuses with a distinct exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import aiohttp
import pytest

from praxiom_client import (
    Forbidden,
    RetryPolicy,
    StreamRefused,
    TaskNotFound,
    Unauthenticated,
    watch_task,
)
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, RunnerHarness, builtin_registry, spawn
from tests.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(live_gateway: LiveGateway) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy("127.0.0.1", int(live_gateway.url.rsplit(":", 1)[1]))
    await tcp.start()
    yield tcp
    await tcp.cut()


async def test_yields_every_state_and_stops_after_the_terminal_one(
    live_gateway: LiveGateway, member: IssuedToken, task_store: TaskStore, runners: RunnerHarness
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.05)
    runners.start(builtin_registry())
    payloads = [p async for p in watch_task(live_gateway.url, task_id, member.token)]
    versions = [p["version"] for p in payloads]
    assert versions == sorted(set(versions))
    assert payloads[-1]["status"] == "completed"
    assert payloads[-1]["result_data"]["document_ids"]
    assert {"assumption_map", "research_plan", "interview_guide"} <= {p["phase"] for p in payloads}
    assert all(p["id"] == str(task_id) for p in payloads)


async def test_reconnects_after_a_cut_and_resumes_with_last_event_id(
    member: IssuedToken, task_store: TaskStore, runners: RunnerHarness, proxy: TcpProxy
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.3)
    sent_ids: list[str | None] = []
    retries: list[tuple[int, float, str]] = []

    async def on_request_start(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        if params.url.path.endswith("/progress"):
            sent_ids.append(params.headers.get("Last-Event-ID"))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    policy = RetryPolicy(first_delay_s=0.2, jitter=0.5)
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        payloads = watch_task(
            f"http://127.0.0.1:{proxy.port}",
            task_id,
            member.token,
            session=session,
            policy=policy,
            on_retry=lambda *args: retries.append(args),
        )
        async for payload in payloads:
            received.append(payload)
            if len(received) == 1:
                runners.start(builtin_registry())
            elif payload["phase"] == "assumption_map" and len(sent_ids) == 1:
                await proxy.cut()  # reset mid-stream; the task moves on meanwhile
                await asyncio.sleep(0.5)
                await proxy.restore()
    versions = [p["version"] for p in received]
    assert versions == sorted(set(versions)), "a version came twice or went back"
    assert received[-1]["status"] == "completed"
    assert received[-1]["version"] == (await task_store.get_task(task_id)).version
    assert len(sent_ids) >= 2 and sent_ids[0] is None
    assert retries and retries[0][2] == "the connection was cut"
    # Every reconnection asked for what came after the last version received before it.
    cut_at = next(p["version"] for p in received if p["phase"] == "assumption_map")
    assert all(sent == str(cut_at) for sent in sent_ids[1:]), (sent_ids, cut_at)
    assert all(0.1 <= delay <= 0.4 for _, delay, _ in retries)  # jittered, never longer


async def test_refusals_raise_distinct_exceptions_with_status_and_error_code(
    live_gateway: LiveGateway, member: IssuedToken, task_store: TaskStore, db: Database
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    stranger = await AccountStore(db).create_token(workspace="elsewhere", user="bob")
    cases: list[tuple[Any, str, type[StreamRefused], int, str]] = [
        (task_id, "pxp_not_a_token", Unauthenticated, 401, "UNAUTHENTICATED"),
        (task_id, stranger.token, Forbidden, 403, "FORBIDDEN"),
        (uuid4(), member.token, TaskNotFound, 404, "NOT_FOUND"),
    ]
    for task, token, kind, status, code in cases:
        with pytest.raises(kind) as raised:
            async for _ in watch_task(live_gateway.url, task, token):
                pass
        assert (raised.value.status, raised.value.code) == (status, code)
        assert raised.value.message
        assert str(raised.value) == f"{status} {code}: {raised.value.message}"
