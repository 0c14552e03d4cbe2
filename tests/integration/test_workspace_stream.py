"""`GET /api/workspaces/{id}/progress` on a real socket: the snapshot, live changes, a reconnect
with Last-Event-ID after missed changes (writes committing out of start order included), the
refusals, and access lost mid-stream. Redis down and back, and a slow client, are in
test_workspace_stream_faults.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import aiohttp
import psycopg2
import pytest
import redis.asyncio as aioredis

from praxiom_progress.gateway.keys import DISPATCHER, LIMIT_STATS, STREAM_STATS
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.publisher import ProgressPublisher
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    LiveGateway,
    RunnerHarness,
    bearer,
    builtin_registry,
    fast_settings,
    spawn,
    wait_for,
)
from tests.sse_client import events, stream_timeout
from tests.workspace_client import WorkspaceClient

SPEC_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}


@pytest.fixture(params=[True, False], ids=["direct-write", "response-write"])
def settings(clean_database: str, request: pytest.FixtureRequest) -> Settings:
    """Every test here runs twice: SSE_DIRECT_WRITE on (the default) and off."""
    return fast_settings(clean_database, sse_idle_timeout_s=1.0, sse_direct_write=request.param)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as client:
        yield client


async def write(db: Database, task_id: UUID, sql_set: str, **values: Any) -> Task:
    """One committed write to a task (the version trigger bumps it), returning the row."""
    row = await db.fetch_one(
        f"UPDATE background_tasks SET {sql_set} WHERE id = %(id)s RETURNING *",
        {"id": task_id, **values},
    )
    assert row is not None
    return Task.from_row(row)


async def finish(db: Database, task_id: UUID, ago_s: float = 0.0) -> Task:
    return await write(
        db,
        task_id,
        "status = 'cancelled', message = 'Cancelled', "
        "completed_at = now() - make_interval(secs => %(ago)s)",
        ago=ago_s,
    )


async def task_stream_data(session: aiohttp.ClientSession, gateway: LiveGateway, token: str,
                           task_id: UUID) -> str:  # fmt: skip
    """The `data:` of the first event of the task's own stream."""
    url = f"{gateway.url}/api/tasks/{task_id}/progress"
    async with session.get(url, headers=bearer(token)) as response:
        async for event in events(response):
            return event.data
    raise AssertionError("no event")


async def test_snapshot_sends_every_live_task_and_the_recently_finished_newest_first(
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    ws = member.workspace_id
    old = await spawn(task_store, ws, "validation_kit")
    await finish(db, old, ago_s=120)  # finished before SSE_WORKSPACE_RECENT (60 s)
    recent = await spawn(task_store, ws, "validation_kit")
    await finish(db, recent, ago_s=5)
    running = await spawn(task_store, ws, "validation_kit")
    await write(db, running, "message = 'Working'")
    pending = await spawn(task_store, ws, "fs_research")
    other = await AccountStore(db).create_token(workspace="elsewhere", user="bob")
    await spawn(task_store, other.workspace_id, "validation_kit")

    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as client:
        assert client.status == 200
        for name, value in SPEC_HEADERS.items():
            assert client.headers[name] == value
        await client.wait_for(lambda c: len(c.events) == 3)
        ids = [p["id"] for p in client.payloads]
        assert ids == [str(pending), str(running), str(recent)]  # newest first, no `old`
        # Each event's data is exactly the bytes of the task's own stream,
        for event, task_id in zip(client.events, [pending, running, recent], strict=True):
            assert event.data == await task_stream_data(session, live_gateway, member.token,
                                                        task_id)  # fmt: skip
        # unnamed, and the first write carries the jittered reconnect hint.
        assert b"event:" not in client.raw
        assert client.raw.startswith(b"retry: ")
        assert client.parser.retry_ms is not None and 1000 <= client.parser.retry_ms <= 3000
        # Only the last event of the read carries its mark: a cut mid-snapshot resumes
        # from before it.
        marks = [e.id for e in client.events]
        assert marks[0] == marks[1] == "0" and int(marks[2] or 0) > 0


async def test_snapshot_holds_at_most_sse_workspace_max_tasks(
    clean_database: str, member: IssuedToken, task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:  # fmt: skip
    gateway = LiveGateway(fast_settings(clean_database, sse_workspace_max_tasks=2))
    await gateway.start()
    try:
        made = [await spawn(task_store, member.workspace_id, "validation_kit") for _ in range(4)]
        async with WorkspaceClient(session, gateway.url, member.workspace_id, member.token) as c:
            await c.wait_for(lambda c: c.last_event_id not in (None, "0"))
            assert [p["id"] for p in c.payloads] == [str(made[3]), str(made[2])]
    finally:
        await gateway.stop()


async def test_live_spawns_progress_and_terminal_states_on_one_connection(
    live_gateway: LiveGateway,
    member: IssuedToken,
    runners: RunnerHarness,
    session: aiohttp.ClientSession,
) -> None:
    ws = member.workspace_id
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as client:
        await client.wait_for(lambda c: c.last_event_id is not None)  # the empty snapshot
        runners.start(builtin_registry())
        spawned = []
        for _ in range(3):  # spawned through the gateway after the stream opened
            async with session.post(
                f"{live_gateway.url}/api/tasks/spawn",
                json={"task_type": "validation_kit", "params": {"step_seconds": 0.05}},
                headers=bearer(member.token),
            ) as response:
                assert response.status == 202
                spawned.append((await response.json())["task_id"])

        def all_completed(c: WorkspaceClient) -> bool:
            newest = c.newest()
            return all(newest.get(t, {}).get("status") == "completed" for t in spawned)

        await client.wait_for(all_completed, 20)
        assert not client.ended.is_set()  # a terminal state does not close this stream
    written = live_gateway.app[DISPATCHER].stats.written  # straight to the socket
    assert written > 0 if live_gateway.settings.sse_direct_write else written == 0
    for task_id in spawned:
        seen = [p for p in client.payloads if p["id"] == task_id]
        versions = [p["version"] for p in seen]
        assert versions == sorted(set(versions)), "per task, versions only go up"
        assert seen[0]["status"] in ("pending", "running")  # as it was when first heard of
        assert {p["phase"] for p in seen} >= {"assumption_map", "research_plan", "complete"}
    # Every event is a payload (no named events), and each mark is a number.
    assert all(e.event == "message" and (e.id or "").isdigit() for e in client.events)


@pytest.mark.parametrize("in_query", [False, True], ids=["header", "query"])
async def test_a_reconnect_with_last_event_id_gets_every_task_changed_meanwhile(
    in_query: bool,
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    ws = member.workspace_id
    busy, ending, quiet = [await spawn(task_store, ws, "validation_kit") for _ in range(3)]
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as first:
        await first.wait_for(lambda c: len(c.events) == 3 and c.last_event_id != "0")
    mark = first.last_event_id
    assert mark is not None
    # While nobody listens (and nothing is published): changes, a spawn, a task finishing
    # (and long enough ago that it is out of any snapshot).
    for pct in (10, 20, 30):
        newest_busy = await write(db, busy, "progress_pct = %(pct)s", pct=pct)
    ended = await finish(db, ending, ago_s=600)
    born = await spawn(task_store, ws, "fs_research")

    async with WorkspaceClient(
        session, live_gateway.url, ws, member.token, last_event_id=mark, in_query=in_query
    ) as second:

        def caught_up(c: WorkspaceClient) -> bool:
            newest = c.newest()
            return str(born) in newest and newest.get(str(ending), {}).get("version") == (
                ended.version
            )

        await second.wait_for(caught_up)
        newest = second.newest()
    assert newest[str(busy)]["version"] == newest_busy.version
    assert newest[str(busy)]["progress_pct"] == 30
    assert newest[str(ending)]["version"] == ended.version
    assert newest[str(ending)]["status"] == "cancelled"
    assert str(born) in newest
    # An unchanged task may come again (a transaction elsewhere in the cluster may hold the
    # mark back), never older than the client has.
    assert newest.get(str(quiet), first.newest()[str(quiet)]) == first.newest()[str(quiet)]
    assert int(second.last_event_id or 0) >= int(mark)


async def test_a_write_that_commits_after_a_later_one_is_not_lost_on_reconnect(
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    settings: Settings,
    session: aiohttp.ClientSession,
) -> None:
    """Two writes: A starts first and commits last. A client that saw B (and a mark read
    after B committed) must still get A on reconnect, though A's row reads as older."""
    ws = member.workspace_id
    slow, fast = await spawn(task_store, ws, "validation_kit"), await spawn(task_store, ws, "x")
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as client:
        await client.wait_for(lambda c: len(c.events) == 2 and c.last_event_id != "0")
    mark = client.last_event_id
    assert mark is not None

    held = psycopg2.connect(settings.database_url)  # transaction A, begun first ...
    try:
        with held.cursor() as cur:
            cur.execute(
                "UPDATE background_tasks SET message = 'started first' WHERE id = %s", (slow,)
            )
        after_b = await write(db, fast, "message = 'committed first'")  # ... B commits
        async with WorkspaceClient(
            session, live_gateway.url, ws, member.token, last_event_id=mark
        ) as seen_b:
            await seen_b.wait_for(lambda c: str(fast) in c.newest())
            assert seen_b.newest()[str(fast)]["version"] == after_b.version
        mark_after_b = seen_b.last_event_id
        assert mark_after_b is not None
        held.commit()  # ... then A commits (and nobody publishes it)
    finally:
        held.close()

    async with WorkspaceClient(
        session, live_gateway.url, ws, member.token, last_event_id=mark_after_b
    ) as again:
        await again.wait_for(lambda c: str(slow) in c.newest())
        assert again.newest()[str(slow)]["message"] == "started first"


async def test_a_running_tasks_progress_comes_on_reconnect_though_its_changed_xid_stays(
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    settings: Settings,
    session: aiohttp.ClientSession,
) -> None:
    """Progress and heartbeats leave a running row's changed_xid alone (so PostgreSQL updates
    it in place); a catch-up takes every running task, so a report written while the client
    was away, even one begun before the client's mark and committed after it, still comes."""
    ws = member.workspace_id
    task_id = await spawn(task_store, ws, "validation_kit")
    claimed = await write(db, task_id, RUNNING)
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as first:
        await first.wait_for(
            lambda c: (
                c.newest().get(str(task_id), {}).get("version") == claimed.version
                and c.last_event_id != "0"
            )
        )
    held = psycopg2.connect(settings.database_url)  # a report, begun before the next mark ...
    try:
        with held.cursor() as cur:
            cur.execute(
                "UPDATE background_tasks SET progress_pct = 40, message = 'begun first' "
                "WHERE id = %s",
                (task_id,),
            )
        other = await spawn(task_store, ws, "fs_research")  # ... a later write, and a mark
        async with WorkspaceClient(
            session, live_gateway.url, ws, member.token, last_event_id=first.last_event_id
        ) as second:
            await second.wait_for(lambda c: str(other) in c.newest())
        mark = second.last_event_id
        held.commit()  # ... committed after that mark was read, and never published
    finally:
        held.close()
    row = await task_store.get_task(task_id)
    assert row.progress_pct == 40 and row.version == claimed.version + 1
    moved = await db.fetch_one(
        "SELECT changed_xid::text::bigint AS xid FROM background_tasks WHERE id = %(id)s",
        {"id": task_id},
    )
    assert moved is not None and mark is not None and moved["xid"] < int(mark)

    async with WorkspaceClient(
        session, live_gateway.url, ws, member.token, last_event_id=mark
    ) as third:
        await third.wait_for(
            lambda c: c.newest().get(str(task_id), {}).get("version") == row.version
        )
        assert third.newest()[str(task_id)]["message"] == "begun first"


RUNNING = (
    "status = 'running', phase = 'running', message = 'Started', started_at = now(), "
    "heartbeat_at = now(), runner_id = 'test', claim_token = gen_random_uuid(), timeout_s = 60"
)


@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000001"])
async def test_refusals_401_404_403_as_for_a_task(
    live_gateway: LiveGateway, member: IssuedToken, db: Database,
    session: aiohttp.ClientSession, bad: str,
) -> None:  # fmt: skip
    other = await AccountStore(db).create_token(workspace="elsewhere", user="bob")
    cases = [
        (member.workspace_id, "pxp_unknown", 401, "UNAUTHENTICATED"),
        (bad, member.token, 404, "NOT_FOUND"),
        (other.workspace_id, member.token, 403, "FORBIDDEN"),
    ]
    for workspace, token, status, code in cases:
        async with WorkspaceClient(session, live_gateway.url, workspace, token) as client:
            assert client.status == status
            assert client.body is not None and client.body["error"]["code"] == code
            assert str(other.workspace_id) not in json.dumps(client.body)
    granted = await AccountStore(db).create_service_token(
        service="indexer", workspaces=["acme"], read_only=True
    )
    async with WorkspaceClient(
        session, live_gateway.url, member.workspace_id, granted.token
    ) as client:
        assert client.status == 200  # a service granted the workspace may follow it


async def test_access_lost_mid_stream_closes_it_and_the_reconnect_is_refused(
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    ws = member.workspace_id
    await spawn(task_store, ws, "validation_kit")
    stays = await AccountStore(db).create_token(workspace="acme", user="carl")
    async with (
        WorkspaceClient(session, live_gateway.url, ws, member.token) as losing,
        WorkspaceClient(session, live_gateway.url, ws, stays.token) as keeping,
    ):
        await losing.wait_for(lambda c: len(c.events) == 1)
        lost_before = live_gateway.app[LIMIT_STATS].streams_access_lost
        assert await AccountStore(db).remove_member(workspace="acme", user="ann")
        async with asyncio.timeout(3):  # the revocation LISTEN: at once, well inside 1 s
            await losing.ended.wait()
        assert live_gateway.app[LIMIT_STATS].streams_access_lost == lost_before + 1
        assert not keeping.ended.is_set()
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as again:
        assert again.status == 403


async def test_a_token_that_runs_out_mid_stream_is_found_by_the_periodic_recheck(
    live_gateway: LiveGateway, db: Database, session: aiohttp.ClientSession
) -> None:
    """Expiry announces nothing: the stream's own re-read every SSE_IDLE_TIMEOUT finds it."""
    short = await AccountStore(db).create_token(workspace="acme", user="dora", expires_in_s=2)
    async with WorkspaceClient(session, live_gateway.url, short.workspace_id, short.token) as c:
        assert c.status == 200
        async with asyncio.timeout(2 + 1.0 * 2 + 2):  # expiry, then within an idle timeout
            await c.ended.wait()


async def test_a_published_payload_for_another_workspaces_task_is_dropped(
    redis_client: aioredis.Redis,
    live_gateway: LiveGateway,
    member: IssuedToken,
    db: Database,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    ws = member.workspace_id
    other = await AccountStore(db).create_token(workspace="elsewhere", user="bob")
    theirs = await spawn(task_store, other.workspace_id, "validation_kit")
    mine = await spawn(task_store, ws, "validation_kit")
    publisher = ProgressPublisher(redis_client)  # a runner's publisher
    async with WorkspaceClient(session, live_gateway.url, ws, member.token) as client:
        await client.wait_for(lambda c: len(c.events) == 1)
        foreign = await write(db, theirs, "message = 'secret'")
        forged = Task.from_row({**_row(foreign), "workspace_id": ws})  # on our channel
        assert await publisher.publish_tasks([forged])
        await publisher.publish_tasks([await write(db, mine, "message = 'after'")])
        await client.wait_for(lambda c: c.newest()[str(mine)]["message"] == "after")
        await wait_for(_async(lambda: live_gateway.app[STREAM_STATS].foreign_tasks >= 1))
        assert str(theirs) not in client.newest()


def _row(task: Task) -> dict[str, Any]:
    return {name: getattr(task, name) for name in task.__dataclass_fields__}


def _async(check: Any) -> Any:
    async def run() -> Any:
        return check()

    return run


async def test_a_spawn_and_a_cancel_reach_the_workspace_stream_with_no_runner_alive(
    settings: Settings, member: IssuedToken, session: aiohttp.ClientSession
) -> None:
    """Nobody publishes them (the gateway's NOTIFY, gateway.written): the stream hears them
    anyway, not at a re-read (none comes within the test: SSE_IDLE_TIMEOUT is a minute)."""
    live_gateway = LiveGateway(settings.replace(sse_idle_timeout_s=60.0))
    await live_gateway.start()
    try:
        await _spawn_and_cancel(live_gateway, member, session)
    finally:
        await live_gateway.stop()


async def _spawn_and_cancel(
    live_gateway: LiveGateway, member: IssuedToken, session: aiohttp.ClientSession
) -> None:
    async with WorkspaceClient(
        session, live_gateway.url, member.workspace_id, member.token
    ) as client:
        await client.wait_for(lambda c: c.last_event_id is not None)
        async with session.post(
            f"{live_gateway.url}/api/tasks/spawn",
            json={"task_type": "validation_kit"},
            headers=bearer(member.token),
        ) as response:
            assert response.status == 202
            task_id = (await response.json())["task_id"]
        await client.wait_for(lambda c: c.newest().get(task_id, {}).get("status") == "pending")
        cancel = f"{live_gateway.url}/api/tasks/{task_id}/cancel"
        async with session.post(cancel, headers=bearer(member.token)) as response:
            assert response.status == 202
        await client.wait_for(lambda c: c.newest()[task_id]["status"] == "cancelled")
