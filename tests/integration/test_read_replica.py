"""Gateways reading from a real hot standby (DATABASE_READ_URL): a streaming replica made by
`pg_basebackup` from a private primary, its replay paused with `pg_wal_replay_pause()`."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg2
import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import READ_ROUTING, SETTINGS
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import TABLES, bearer, fast_settings, record_builtin_catalogue, wait_for
from tests.replica_servers import Replicated, replicated
from tests.sse_client import events, stream_timeout

READER = "praxiom_reader"


@pytest.fixture(scope="module")
def servers() -> Iterator[Replicated]:
    # Not under pytest's base directory: another pytest run resets it to 0700, and the
    # servers' own user must keep reaching its data directories.
    with replicated(Path(tempfile.mkdtemp(prefix="praxiom-replica-"))) as made:
        made.on_primary(
            f"CREATE ROLE {READER} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}"
        )
        yield made


@pytest.fixture
async def primary(servers: Replicated) -> AsyncIterator[Database]:
    """Replay running and caught up, every table emptied; a pool on the primary."""
    servers.resume()
    servers.on_primary(f"TRUNCATE {TABLES} CASCADE")
    conn = Replicated.connect(servers.primary.url)
    with conn.cursor() as cur:
        record_builtin_catalogue(cur)
    conn.close()
    await wait_for(lambda: asyncio.sleep(0, servers.replayed_all()))
    db = await Database.connect(Settings(database_url=servers.primary.url), name="test")
    yield db
    await db.close()
    servers.resume()


def standby_settings(servers: Replicated, **overrides: Any) -> Settings:
    return fast_settings(
        servers.primary.url,
        database_read_url=servers.standby.url,
        database_read_check_interval_s=0.05,
        **overrides,
    )


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


async def fresh_gateway(aiohttp_client: Any, settings: Settings) -> Any:
    """A gateway whose standby check has run (reads go to the standby while it keeps up)."""
    client = await aiohttp_client(create_app(settings))
    routing = client.server.app[READ_ROUTING]
    assert routing is not None
    await wait_for(lambda: asyncio.sleep(0, routing.fresh()))
    return client


async def paused(servers: Replicated) -> None:
    servers.pause()

    async def is_paused() -> bool:
        (row,) = servers.on_standby("SELECT pg_get_wal_replay_pause_state() AS state")
        return row["state"] == "paused"

    await wait_for(is_paused)


def finish(servers: Replicated, task_id: UUID, message: str = "done") -> None:
    """A task's last write on the primary, published to nobody."""
    servers.on_primary(
        "UPDATE background_tasks SET status = 'completed', progress_pct = 100, "
        "phase = 'done', message = %(message)s, completed_at = now(), version = version + 1 "
        "WHERE id = %(id)s",
        {"id": task_id, "message": message},
    )


async def setup_task(primary: Database, servers: Replicated) -> tuple[IssuedToken, UUID]:
    member = await AccountStore(primary).create_token(workspace="acme", user="ann")
    task = await TaskStore(primary).insert_task(
        workspace_id=member.workspace_id, task_type="validation_kit", params={}
    )
    await wait_for(lambda: asyncio.sleep(0, servers.replayed_all()))
    return member, task.id


async def status(client: Any, token: str, task_id: UUID) -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"/api/tasks/{task_id}/status", headers=bearer(token))
    return resp.status, await resp.json()


async def test_reads_come_from_a_standby_that_keeps_up_and_refusals_ask_the_primary(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    member, task_id = await setup_task(primary, servers)
    client = await fresh_gateway(
        aiohttp_client, standby_settings(servers, database_read_max_lag_s=60.0,
                                         sse_idle_timeout_s=60.0)
    )  # fmt: skip
    await paused(servers)
    finish(servers, task_id, "only on the primary")
    # Within DATABASE_READ_MAX_LAG the standby answers: the state it has replayed.
    code, body = await status(client, member.token, task_id)
    assert (code, body["status"], body["message"]) == (200, "pending", "Queued")
    listed = await client.get("/api/tasks", headers=bearer(member.token))
    assert [(t["id"], t["status"]) for t in (await listed.json())["tasks"]] == [
        (str(task_id), "pending")
    ]  # the list too
    # A token and a task the standby has not replayed: its refusal is asked of the primary.
    newcomer = await AccountStore(primary).create_token(workspace="beta", user="bob")
    newer = await TaskStore(primary).insert_task(
        workspace_id=newcomer.workspace_id, task_type="validation_kit", params={}
    )
    assert (
        servers.on_standby("SELECT id FROM background_tasks WHERE id = %(id)s", {"id": newer.id})
        == []
    )
    code, body = await status(client, newcomer.token, newer.id)
    assert (code, body["id"]) == (200, str(newer.id))
    # Spawn and cancel go to the primary, whatever the standby lacks.
    resp = await client.post(f"/api/tasks/{newer.id}/cancel", headers=bearer(newcomer.token))
    assert resp.status == 202, await resp.text()
    routing = client.server.app[READ_ROUTING]
    assert routing.standby_reads > 0 and routing.primary_reads == 0


async def test_a_standby_left_behind_loses_the_reads_to_the_primary(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    member, task_id = await setup_task(primary, servers)
    client = await fresh_gateway(
        aiohttp_client, standby_settings(servers, database_read_max_lag_s=0.3)
    )
    await paused(servers)
    finish(servers, task_id)

    async def from_primary() -> bool:
        return (await status(client, member.token, task_id))[1]["status"] == "completed"

    await wait_for(from_primary)
    routing = client.server.app[READ_ROUTING]
    assert not routing.fresh() and routing.primary_reads > 0
    scraped = await (await client.get("/metrics")).text()
    assert "praxiom_gateway_standby_fresh 0.0" in scraped
    assert 'praxiom_gateway_database_reads_total{server="primary"}' in scraped
    servers.resume()  # replayed again: the reads go back to the standby
    await wait_for(lambda: asyncio.sleep(0, routing.fresh()))


async def test_a_stream_never_misses_the_terminal_state_a_lagging_standby_lacks(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    """The task finished before the stream connected, unpublished; the snapshot comes from
    the paused standby (still pending); the first idle re-read finds the end on the primary."""
    member, task_id = await setup_task(primary, servers)
    lag_s = 3.0
    client = await fresh_gateway(
        aiohttp_client,
        standby_settings(servers, database_read_max_lag_s=lag_s, sse_idle_timeout_s=lag_s),
    )
    await paused(servers)
    finish(servers, task_id, "finished while nobody watched")
    seen: list[dict[str, Any]] = []
    async with client.get(
        f"/api/tasks/{task_id}/progress", headers=bearer(member.token), timeout=stream_timeout(20)
    ) as resp:
        assert resp.status == 200
        async for event in events(resp):
            seen.append(event.payload)
    assert [p["status"] for p in seen] == ["pending", "completed"]
    assert seen[-1]["message"] == "finished while nobody watched"
    assert seen[0]["version"] < seen[1]["version"]


async def test_a_reconnect_never_starts_below_its_last_event_id(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    """The browser saw version n+1 (from the primary, through Redis); it reconnects to a
    gateway whose standby still has n: the snapshot comes from the primary."""
    member, task_id = await setup_task(primary, servers)
    client = await fresh_gateway(
        aiohttp_client,
        standby_settings(servers, database_read_max_lag_s=60.0, sse_idle_timeout_s=60.0),
    )
    await paused(servers)
    (row,) = servers.on_primary(
        "UPDATE background_tasks SET message = 'newer', version = version + 1 "
        "WHERE id = %(id)s RETURNING version",
        {"id": task_id},
    )
    headers = {**bearer(member.token), "Last-Event-ID": str(row["version"])}
    async with client.get(
        f"/api/tasks/{task_id}/progress", headers=headers, timeout=stream_timeout(20)
    ) as resp:
        assert resp.status == 200
        first = await anext(events(resp))
    assert (first.payload["version"], first.payload["message"]) == (row["version"], "newer")
    # The standby itself still has the older row: the gateway did not read it for this.
    (old,) = servers.on_standby(
        "SELECT version FROM background_tasks WHERE id = %(id)s", {"id": task_id}
    )
    assert old["version"] < row["version"]


async def test_a_stream_on_a_paused_standby_goes_forward_only(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    """Updates the standby has not replayed arrive through Redis; whatever the gateway reads
    meanwhile, versions only go up, and the terminal state ends the stream."""
    member, task_id = await setup_task(primary, servers)
    client = await fresh_gateway(
        aiohttp_client,
        standby_settings(
            servers, database_read_max_lag_s=1.0, sse_idle_timeout_s=1.0, sse_poll_interval_s=0.2
        ),
    )
    store = TaskStore(primary)
    redis = connect_redis(client.server.app[SETTINGS].redis_url)
    publisher = ProgressPublisher(redis)
    versions: list[int] = []
    try:
        async with client.get(
            f"/api/tasks/{task_id}/progress", headers=bearer(member.token),
            timeout=stream_timeout(20),
        ) as resp:  # fmt: skip
            stream = events(resp)
            versions.append((await anext(stream)).payload["version"])
            await paused(servers)
            for step in range(1, 4):
                servers.on_primary(
                    "UPDATE background_tasks SET message = %(m)s, version = version + 1 "
                    "WHERE id = %(id)s",
                    {"id": task_id, "m": f"step {step}"},
                )
                task = await store.get_task(task_id)
                assert task is not None
                await publisher.publish_tasks([task])
                versions.append((await anext(stream)).payload["version"])
                await asyncio.sleep(0.6)  # idle re-reads and lag checks in between
            finish(servers, task_id)
            task = await store.get_task(task_id)
            assert task is not None
            await publisher.publish_tasks([task])
            async for event in stream:
                versions.append(event.payload["version"])
    finally:
        await redis.aclose()
    assert versions == sorted(set(versions)), versions
    assert len(versions) >= 5


async def test_a_read_only_gateway_on_the_standby(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    """GATEWAY_WRITES=0 with a role that may only SELECT, on the primary (its LISTEN) and the
    standby (its reads): spawn and cancel are 404 with the error body, streams work, a revoked
    token's stream ends at once (the LISTEN), and the gateway writes nothing."""
    member, task_id = await setup_task(primary, servers)
    settings = standby_settings(
        servers, gateway_writes=False, token_last_used_interval_s=0.1, sse_idle_timeout_s=30.0
    )
    settings = settings.replace(
        database_url=as_role(servers.primary.url, READER),
        database_read_url=as_role(servers.standby.url, READER),
    )
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):  # the role really reads only
        Replicated.connect(settings.database_url).cursor().execute(
            "UPDATE background_tasks SET message = 'x'"
        )
    client = await fresh_gateway(aiohttp_client, settings)
    for path, body in (
        ("/api/tasks/spawn", {"task_type": "validation_kit", "params": {}}),
        (f"/api/tasks/{task_id}/cancel", None),
    ):
        resp = await client.post(path, json=body, headers=bearer(member.token))
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["code"] == "NOT_FOUND" and "does not spawn or cancel" in error["message"]
    assert (await status(client, member.token, task_id))[0] == 200
    async with client.get(
        f"/api/tasks/{task_id}/progress", headers=bearer(member.token), timeout=stream_timeout(20)
    ) as resp:
        assert resp.status == 200
        stream = events(resp)
        assert (await anext(stream)).payload["status"] == "pending"
        assert await AccountStore(primary).revoke_token(member.token)
        revoked = time.monotonic()
        rest = [event async for event in stream]
    # Well before the idle re-check (30 s): the revocation's NOTIFY was heard on the primary.
    assert time.monotonic() - revoked < 10.0
    assert all(event.payload.get("status") != "completed" for event in rest)
    await asyncio.sleep(0.3)  # several token-use intervals: nothing is written
    (row,) = servers.on_primary("SELECT last_used_at FROM api_tokens")
    assert row["last_used_at"] is None


async def test_a_standby_gone_hands_its_reads_to_the_primary_at_once(
    aiohttp_client: Any, servers: Replicated, primary: Database
) -> None:
    """Within DATABASE_READ_MAX_LAG (a minute here) of its last check: the first read that
    fails on the standby is answered by the primary, and so are the reads after it."""
    member, task_id = await setup_task(primary, servers)
    client = await fresh_gateway(
        aiohttp_client,
        standby_settings(servers, database_read_max_lag_s=60.0, sse_idle_timeout_s=60.0),
    )
    servers.standby.stop()
    try:
        assert (await status(client, member.token, task_id))[0] == 200
        assert (await status(client, member.token, task_id))[0] == 200
        routing = client.server.app[READ_ROUTING]
        assert routing is not None and not routing.fresh() and routing.primary_reads >= 2
    finally:
        servers.standby.start()
