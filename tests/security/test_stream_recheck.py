"""An open stream re-checks its caller every SSE_IDLE_TIMEOUT, quiet or busy: a caller who
loses the workspace, or whose token is revoked or expires, has the stream closed within one
SSE_IDLE_TIMEOUT, and the reconnect is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import DISPATCHER, LIMIT_STATS
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import LiveGateway, ThrowawayRedis, bearer, wait_for
from tests.security.kit import assert_refused, expire, make_scene
from tests.sse_client import events, stream_timeout

IDLE_S = 1.0
#: Scheduling slack on a busy 2-core machine, on top of the one interval promised.
SLACK_S = 0.6


@pytest.fixture(params=[True, False], ids=["direct-write", "response-write"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every test here runs twice: SSE_DIRECT_WRITE on (the default) and off."""
    return settings.replace(sse_direct_write=request.param)


async def follow_until_closed(resp: Any, after_first: Callable[[], Awaitable[Any]]) -> float:
    """Read the stream; run `after_first` once the first event is in; return how long the
    stream stayed open after that."""
    lost_at: float | None = None
    count = 0
    async for event in events(resp):
        count += 1
        assert event.payload["status"] == "pending"
        if lost_at is None:
            await after_first()
            lost_at = time.monotonic()
    assert lost_at is not None
    return time.monotonic() - lost_at


@pytest.mark.parametrize("loss", ["membership removed", "token revoked", "token expired"])
async def test_a_stream_is_closed_within_one_idle_interval_after_access_is_lost(
    loss: str, aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    app = create_app(settings.replace(sse_idle_timeout_s=IDLE_S))
    api = await aiohttp_client(app)
    scene = await make_scene(db, task_store)
    accounts = AccountStore(db)
    token = scene.member.token
    path = f"/api/tasks/{scene.task_id}/progress"

    async def lose_access() -> None:
        if loss == "membership removed":
            assert await accounts.remove_member(workspace="acme", user="ann")
        elif loss == "token revoked":
            assert await accounts.revoke_token(token)
        else:
            await expire(db, token)

    resp = await api.get(path, headers=bearer(token))
    assert resp.status == 200
    open_for_s = await asyncio.wait_for(follow_until_closed(resp, lose_access), 10)
    assert open_for_s < IDLE_S + SLACK_S, open_for_s
    assert app[LIMIT_STATS].streams_access_lost == 1

    again = await api.get(path, headers=bearer(token))
    status, code = (403, "FORBIDDEN") if loss == "membership removed" else (401, "UNAUTHENTICATED")
    await assert_refused(again, status, code, scene.task_id)


async def test_a_stream_whose_caller_keeps_access_stays_open_across_idle_rereads(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    """The control: the same stream, nothing lost, sees its idle re-emits and stays open."""
    app = create_app(settings.replace(sse_idle_timeout_s=IDLE_S / 2))
    api = await aiohttp_client(app)
    scene = await make_scene(db, task_store)
    resp = await api.get(f"/api/tasks/{scene.task_id}/progress", headers=bearer(scene.member.token))
    received = []
    async for event in events(resp):
        received.append(event.payload)
        if len(received) == 5:  # the first event and four idle re-emits
            break
    resp.close()
    assert len(received) == 5, f"the stream ended after {len(received)} events"
    assert {(p["version"], p["status"]) for p in received} == {(1, "pending")}  # re-emits
    assert app[LIMIT_STATS].streams_access_lost == 0


async def test_a_polling_stream_redis_down_is_closed_too_when_its_token_is_revoked(
    settings: Settings,
    db: Database,
    task_store: TaskStore,
    throwaway_redis: ThrowawayRedis,
) -> None:
    """With Redis down there is no idle re-emit: each poll re-checks instead."""
    gateway = LiveGateway(settings.replace(redis_url=throwaway_redis.url, sse_poll_interval_s=0.2))
    await gateway.start()
    try:
        scene = await make_scene(db, task_store)
        url = f"{gateway.url}/api/tasks/{scene.task_id}/progress"
        token = scene.member.token
        async with aiohttp.ClientSession(timeout=stream_timeout(10)) as session:
            async with session.get(url, headers=bearer(token)) as resp:
                assert resp.status == 200
                throwaway_redis.stop()

                async def polling() -> bool:
                    return not gateway.app[DISPATCHER].available

                await wait_for(polling, 10)
                open_for_s = await asyncio.wait_for(
                    follow_until_closed(resp, lambda: AccountStore(db).revoke_token(token)), 10
                )
            assert open_for_s < 0.2 + 2 * SLACK_S, open_for_s
            async with session.get(url, headers=bearer(token)) as again:
                await assert_refused(again, 401, "UNAUTHENTICATED", scene.task_id)
        assert gateway.app[LIMIT_STATS].streams_access_lost == 1
    finally:
        await gateway.stop()


async def test_a_busy_stream_is_closed_within_one_idle_interval_after_its_token_expires(
    aiohttp_client: Any,
    settings: Settings,
    db: Database,
    task_store: TaskStore,
    redis_client: Any,
) -> None:
    """A stream never quiet (an update every fifth of the interval) is re-checked all the same.
    The token runs out by the clock: nothing announces that (a revocation would close the
    stream at once, tests/security/test_revocation.py), so only the idle re-check finds it."""
    app = create_app(settings.replace(sse_idle_timeout_s=IDLE_S))
    api = await aiohttp_client(app)
    scene = await make_scene(db, task_store)
    token = scene.member.token
    row = await task_store.get_task(scene.task_id)
    assert row is not None

    async def keep_publishing() -> None:
        version = row.version
        while True:
            await asyncio.sleep(IDLE_S / 5)
            version += 1
            payload = task_payload(dataclasses.replace(row, version=version))
            await redis_client.publish(progress_channel(scene.task_id), encode_payload(payload))

    resp = await api.get(f"/api/tasks/{scene.task_id}/progress", headers=bearer(token))
    assert resp.status == 200
    publisher = asyncio.create_task(keep_publishing())
    received = 0

    async def revoke_once_updates_flow() -> None:
        nonlocal received
        received += 1
        if received == 3:  # expires a moment from now; the UPDATE's own re-check passes it
            await db.fetch_all(
                "UPDATE api_tokens SET expires_at = now() + interval '0.3 seconds' "
                "WHERE token_hash = %(h)s",
                {"h": hash_token(token)},
            )

    async def follow() -> float:
        revoked_at: float | None = None
        async for _ in events(resp):
            await revoke_once_updates_flow()
            if received == 3:
                revoked_at = time.monotonic()
        assert revoked_at is not None
        return time.monotonic() - revoked_at

    try:
        open_for_s = await asyncio.wait_for(follow(), 5 * IDLE_S)
        assert received > 3, "updates kept flowing until the stream closed"
        assert open_for_s < IDLE_S + SLACK_S, open_for_s
    finally:
        publisher.cancel()
    assert app[LIMIT_STATS].streams_access_lost == 1
