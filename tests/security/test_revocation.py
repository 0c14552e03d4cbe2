"""Revocation at once: revoking a token, removing a member or deleting a service's grant closes
the affected streams within a second, long before the idle re-check (a minute here), and
sends them nothing more; streams of callers who keep their access stay open."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import ACCESS_CHANGES, LIMIT_STATS
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import encode_payload, task_payload
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer, wait_for
from tests.security.kit import make_scene
from tests.sse_client import events

#: The promise; the idle re-check would take SSE_IDLE_TIMEOUT (60 s below).
AT_ONCE_S = 1.0


@pytest.mark.parametrize("loss", ["token revoked", "member removed", "grant deleted"])
async def test_losing_access_closes_the_stream_at_once_and_sends_nothing_more(
    loss: str,
    aiohttp_client: Any,
    settings: Settings,
    db: Database,
    task_store: TaskStore,
    redis_client: aioredis.Redis,
) -> None:
    app = create_app(settings.replace(sse_idle_timeout_s=60))
    api = await aiohttp_client(app)
    scene = await make_scene(db, task_store)
    accounts = AccountStore(db)
    if loss == "grant deleted":
        token = (await accounts.create_service_token(service="ops", workspaces=["acme"])).token
    else:
        token = scene.member.token
    keeper = await accounts.create_token(workspace="acme", user="carl")  # keeps access

    async def lose_access() -> None:
        if loss == "token revoked":
            assert await accounts.revoke_token(token)
        elif loss == "member removed":
            assert await accounts.remove_member(workspace="acme", user="ann")
        else:
            await db.fetch_all("DELETE FROM api_token_workspaces")

    path = f"/api/tasks/{scene.task_id}/progress"
    losing = await api.get(path, headers=bearer(token))
    keeping = await api.get(path, headers=bearer(keeper.token))
    assert (losing.status, keeping.status) == (200, 200)
    lost_events, kept_events = events(losing), events(keeping)
    await anext(lost_events)
    await anext(kept_events)
    await wait_for(lambda: _listening(app), 10)  # the gateway's LISTEN is up

    await lose_access()
    lost_at = time.monotonic()
    await asyncio.sleep(0.3)
    # The task's next state, written and published as a runner does: the stream whose caller
    # lost access must not get it.
    cancelled = await task_store.cancel_task(scene.task_id)
    await redis_client.publish(
        progress_channel(scene.task_id), encode_payload(task_payload(cancelled))
    )
    after = [event.payload async for event in lost_events]
    closed_after_s = time.monotonic() - lost_at
    assert after == [], "a stream sent task data after its caller lost access"
    assert closed_after_s < AT_ONCE_S + 0.3, closed_after_s
    assert app[LIMIT_STATS].streams_access_lost == 1
    kept = [event.payload async for event in kept_events]
    assert [p["status"] for p in kept] == ["cancelled"]  # the other caller's stream went on


async def _listening(app: Any) -> bool:
    return bool(app[ACCESS_CHANGES].rechecks)
