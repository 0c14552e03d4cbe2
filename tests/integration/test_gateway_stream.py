"""The SSE stream on a real socket, run as production runs it (AppRunner + TCPSite), in both
write modes: updates written straight to the socket, and every write through the response."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import pytest

from praxiom_progress.gateway.idle import CHUNK, MIN_PER_SWEEP
from praxiom_progress.gateway.keys import (
    DISPATCHER,
    GATEWAY_STORE,
    IDLE_SWEEPER,
    PINGER,
    STREAM_STATS,
    STREAMS,
)
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import PAYLOAD_FIELDS, TaskPayloadSchema
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    LiveGateway,
    RunnerHarness,
    ThrowawayRedis,
    bearer,
    builtin_registry,
    claim_by_hand,
    spawn,
    wait_for,
    wait_for_status,
)
from tests.sse_client import Event, events, stream_timeout

SPEC_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}


async def collect(
    session: aiohttp.ClientSession, url: str, token: str, **headers: str
) -> tuple[aiohttp.ClientResponse, list[Event]]:
    """Open a stream and read it to its end."""
    async with session.get(url, headers={**bearer(token), **headers}) as response:
        received = [event async for event in events(response)] if response.status == 200 else []
        return response, received


def progress_url(gateway: LiveGateway, task_id: UUID) -> str:
    return f"{gateway.url}/api/tasks/{task_id}/progress"


@pytest.fixture(params=[True, False], ids=["direct-write", "response-write"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Every test here runs twice: SSE_DIRECT_WRITE on (the default) and off."""
    return settings.replace(sse_direct_write=request.param)


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as client:
        yield client


async def test_stream_headers_event_format_and_the_full_life_of_a_task(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
    session: aiohttp.ClientSession,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.05)
    async with session.get(progress_url(live_gateway, task_id), headers=bearer(member.token)) as r:
        assert r.status == 200
        for name, value in SPEC_HEADERS.items():
            assert r.headers[name] == value
        received: list[Event] = []
        async for event in events(r):
            received.append(event)
            if len(received) == 1:
                runners.start(builtin_registry())  # the task starts only once we are watching
    payloads = [event.payload for event in received]

    first = received[0]
    assert first.retry is not None and 1000 <= first.retry <= 3000
    assert all(event.retry is None for event in received[1:])
    for event in received:
        assert event.event is None and "event" not in event.fields
        assert event.id == str(event.payload["version"])
        assert list(event.payload) == list(PAYLOAD_FIELDS)
        TaskPayloadSchema().load(event.payload)
    versions = [p["version"] for p in payloads]
    assert versions == sorted(set(versions)), "versions must strictly increase"
    assert payloads[0]["status"] == "pending"
    phases = [(p["phase"], p["progress_pct"]) for p in payloads if p["status"] == "running"]
    assert phases[0] == ("running", 0)  # just claimed (issue 13: no longer phase "pending")
    assert phases[1:] == [
        ("assumption_map", 15),
        ("research_plan", 50),
        ("interview_guide", 80),
    ]
    assert payloads[-1]["status"] == "completed"
    assert (payloads[-1]["phase"], payloads[-1]["progress_pct"]) == ("complete", 100)


async def test_fifty_clients_connecting_mid_run_each_see_increasing_versions_to_the_end(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
    session: aiohttp.ClientSession,
) -> None:
    """Every client joins while the task runs (its first event is a running state): half of
    them while the handler waits, half while it reports; the handler finishes only once all
    fifty have joined."""
    half_joined, all_joined = asyncio.Event(), asyncio.Event()
    joined = 0

    async def hurried(task: TaskContext) -> dict[str, Any]:
        await task.report_progress("running", 1, "step 0")
        await half_joined.wait()
        for step in range(1, 300):
            await task.report_progress("running", step // 3, f"step {step}")
        await all_joined.wait()
        return {"steps": 300}

    registry = HandlerRegistry()
    registry.register("hurried", hurried)
    runners.start(registry)
    task_id = await spawn(task_store, member.workspace_id, "hurried")
    await wait_for_status(task_store, task_id, {"running"})

    async def client() -> list[dict[str, Any]]:
        nonlocal joined
        url = progress_url(live_gateway, task_id)
        payloads: list[dict[str, Any]] = []
        async with session.get(url, headers=bearer(member.token)) as response:
            async for event in events(response):
                payloads.append(event.payload)
                if len(payloads) == 1:
                    joined += 1
                    if joined == 25:
                        half_joined.set()
                    if joined == 50:
                        all_joined.set()
        return payloads

    async with asyncio.timeout(30):  # a client that never joins fails the test, not hangs it
        first_half = [asyncio.create_task(client()) for _ in range(25)]
        await half_joined.wait()
        results = [*await asyncio.gather(*first_half, *(client() for _ in range(25)))]
    final = await task_store.get_task(task_id)
    assert final is not None and final.status == "completed"
    for payloads in results:
        assert payloads[0]["status"] == "running", "a client joined before or after the run"
        versions = [p["version"] for p in payloads]
        assert versions == sorted(set(versions)), "a client saw a version twice or go back"
        assert payloads[-1]["status"] == "completed"
        assert payloads[-1]["version"] == final.version


async def test_quiet_redis_makes_the_stream_reread_and_reemit_the_row(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    gateway = LiveGateway(settings.replace(sse_idle_timeout_s=0.3))
    await gateway.start()
    try:
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        received: list[Event] = []
        started = time.monotonic()
        async with session.get(progress_url(gateway, task_id), headers=bearer(member.token)) as r:
            async for event in events(r):
                received.append(event)
                if len(received) == 3:
                    break
        elapsed = time.monotonic() - started
        # Nothing changed: the same state, re-sent with the same id, once per idle timeout.
        assert [e.id for e in received] == ["1", "1", "1"]
        assert elapsed >= 0.55
    finally:
        await gateway.stop()


def count_sweep_reads(gateway: LiveGateway) -> list[int]:
    """The size of each idle sweep's query (it re-reads rows and re-checks callers at once),
    appended as the sweeps run."""
    store = gateway.app[GATEWAY_STORE]
    reads: list[int] = []
    read_many = store.reread_streams

    async def counting(pairs: Any, **kwargs: Any) -> Any:
        pairs = list(pairs)
        reads.append(len(pairs))
        return await read_many(pairs, **kwargs)

    store.reread_streams = counting  # type: ignore[method-assign]
    return reads


async def test_quiet_streams_are_re_read_together_in_one_query_per_sweep(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    """Thirty streams fall quiet at one instant (the sweeper's clock jumps a timeout on once
    all are open, rather than hoping they open within one tick): one query re-reads them all."""
    gateway = LiveGateway(settings.replace(sse_idle_timeout_s=5.0))
    await gateway.start()
    reads = count_sweep_reads(gateway)
    try:
        task_ids = [await spawn(task_store, member.workspace_id, "research") for _ in range(30)]
        opened = 0
        all_open = asyncio.Event()

        async def two_events(task_id: UUID) -> list[str | None]:
            nonlocal opened
            url = progress_url(gateway, task_id)
            async with session.get(url, headers=bearer(member.token)) as response:
                received = []
                async for event in events(response):
                    received.append(event.id)
                    if len(received) == 1:
                        opened += 1
                        if opened == len(task_ids):
                            all_open.set()
                    if len(received) == 2:
                        return received
            return received

        watching = asyncio.gather(*map(two_events, task_ids))
        await asyncio.wait_for(all_open.wait(), 10)
        assert reads == []  # none was quiet yet
        gateway.app[IDLE_SWEEPER].clock = lambda: time.monotonic() + 5.0
        results = await asyncio.wait_for(watching, 10)
        assert all(ids == ["1", "1"] for ids in results)  # the snapshot, then the re-emit
        assert reads[0] == 30, reads  # streams that fell quiet together: one query
    finally:
        await gateway.stop()


async def test_streams_falling_due_together_are_spread_over_sweeps(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    """A sweep takes at most its share (here the floor, MIN_PER_SWEEP), the most overdue first,
    in queries of CHUNK streams, so a crowd that falls due at one instant does not stall the
    loop in one sweep; the rest follow a tick later, and every stream still gets its re-emit."""
    crowd = MIN_PER_SWEEP + 50
    gateway = LiveGateway(settings.replace(sse_idle_timeout_s=5.0, streams_per_principal=crowd))
    await gateway.start()
    reads = count_sweep_reads(gateway)
    try:
        task_ids = [await spawn(task_store, member.workspace_id, "research") for _ in range(crowd)]
        first_events = 0
        all_open = asyncio.Event()

        async def two_events(task_id: UUID) -> int:
            nonlocal first_events
            url = progress_url(gateway, task_id)
            async with session.get(url, headers=bearer(member.token)) as response:
                received = 0
                async for _ in events(response):
                    received += 1
                    if received == 1:
                        first_events += 1
                        if first_events == crowd:
                            all_open.set()
                    if received == 2:
                        return received
            return received

        # All at once: a session's default connector holds 100 connections at most.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=stream_timeout(20)
        )
        try:
            watching = asyncio.gather(*map(two_events, task_ids))
            await asyncio.wait_for(all_open.wait(), 10)
            # The whole crowd falls due at this instant: the sweeper's clock jumps a timeout on.
            gateway.app[IDLE_SWEEPER].clock = lambda: time.monotonic() + 5.0
            results = await asyncio.wait_for(watching, 10)
        finally:
            await session.close()
        assert results == [2] * crowd  # every stream got its re-emit
        assert max(reads) == CHUNK, reads  # a sweep took its share in chunks, never the crowd
        assert sum(reads) >= crowd, reads
    finally:
        await gateway.stop()


async def test_last_event_id_at_the_terminal_version_gets_204(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    cancelled = await task_store.cancel_task(task_id)
    url = progress_url(live_gateway, task_id)
    version = str(cancelled.version)

    response, received = await collect(session, url, member.token, **{"Last-Event-ID": version})
    assert response.status == 204 and received == []
    response, received = await collect(session, f"{url}?last_event_id={version}", member.token)
    assert response.status == 204

    # An older id: the stream starts with the current (terminal) state, then closes.
    response, received = await collect(session, url, member.token, **{"Last-Event-ID": "1"})
    assert response.status == 200
    assert [e.payload["status"] for e in received] == ["cancelled"]


async def test_last_event_id_on_a_running_task_starts_with_the_current_state(
    live_gateway: LiveGateway,
    db: Database,
    member: IssuedToken,
    task_store: TaskStore,
    redis_client: Any,
    session: aiohttp.ClientSession,
) -> None:
    """A running task is no reason for 204, whatever id the client saw last (its own current
    version included): the stream starts with the current state, and follows the task."""
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    await claim_by_hand(
        db, task_id, runner_id="elsewhere", started_ago_s=1, beat_ago_s=0, timeout_s=600
    )
    running = await task_store.get_task(task_id)
    assert running is not None and running.status == "running" and running.version > 1
    for seen_current in (False, True):  # an older id, then the very version it is at
        seen = str(running.version) if seen_current else "1"
        headers = {**bearer(member.token), "Last-Event-ID": seen}
        async with session.get(progress_url(live_gateway, task_id), headers=headers) as r:
            assert r.status == 200
            received = events(r)
            first = await anext(received)
            assert first.payload["status"] == "running"
            assert first.id == str(running.version)
            task = await touch(db, task_id, f"after Last-Event-ID {seen}")
            assert await ProgressPublisher(redis_client).publish_tasks([task]) > 0
            assert (await anext(received)).id == str(task.version)
            running = task


async def test_a_stream_that_polled_returns_to_pubsub_when_redis_returns(
    settings: Settings,
    db: Database,
    member: IssuedToken,
    task_store: TaskStore,
    throwaway_redis: ThrowawayRedis,
    session: aiohttp.ClientSession,
) -> None:
    """The same stream, not a new one: it polls while Redis is down, then is carried by pub/sub
    again (it leaves polling), and gets every version, in order, across both switches."""
    gateway = LiveGateway(settings.replace(redis_url=throwaway_redis.url, sse_poll_interval_s=0.2))
    await gateway.start()
    try:
        dispatcher, stats = gateway.app[DISPATCHER], gateway.app[STREAM_STATS]
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        url = progress_url(gateway, task_id)
        async with session.get(url, headers=bearer(member.token)) as r:
            received = events(r)
            versions = [int((await anext(received)).payload["version"])]
            (stream,) = list(gateway.app[STREAMS])

            async def on_pubsub() -> bool:  # the sweeper's view: infinite while it polls
                return dispatcher.available and stream.overdue_since != math.inf

            await wait_for(on_pubsub)
            throwaway_redis.stop()
            await wait_for(lambda: asyncio.sleep(0, result=not dispatcher.available))
            await touch(db, task_id, "while Redis is down")
            versions.append(int((await anext(received)).payload["version"]))
            assert stats.polls > 0, "only polling can have carried that update"

            throwaway_redis.start()
            await wait_for(on_pubsub)  # this stream left polling
            polls = stats.polls
            client = connect_redis(throwaway_redis.url)
            publisher = ProgressPublisher(client)
            try:
                task = await touch(db, task_id, "Redis is back")
                assert await publisher.publish_tasks([task]) > 0
                versions.append(int((await anext(received)).payload["version"]))
                cancelled = await task_store.cancel_task(task_id)
                assert await publisher.publish_tasks([cancelled]) > 0
                versions += [int(event.payload["version"]) async for event in received]
            finally:
                await client.aclose()
            assert stats.polls == polls, "pub/sub, not polling, carried the last updates"
        assert versions == list(range(1, cancelled.version + 1))
    finally:
        await gateway.stop()


async def touch(db: Database, task_id: UUID, message: str) -> Task:
    """Commit a new version of the task (its message changed), as any writer would."""
    row = await db.fetch_one(
        "UPDATE background_tasks SET message = %(m)s WHERE id = %(id)s RETURNING *",
        {"id": task_id, "m": message},
    )
    assert row is not None
    return Task.from_row(row)


async def test_polling_stops_after_the_poll_limit(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    throwaway_redis: ThrowawayRedis,
    session: aiohttp.ClientSession,
) -> None:
    throwaway_redis.stop()
    own = settings.replace(redis_url=throwaway_redis.url, sse_poll_interval_s=0.1, sse_poll_limit=3)
    gateway = LiveGateway(own)
    await gateway.start()
    try:
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        started = time.monotonic()
        response, received = await collect(session, progress_url(gateway, task_id), member.token)
        assert response.status == 200
        assert [e.payload["status"] for e in received] == ["pending"]
        assert gateway.app[STREAM_STATS].poll_limit_closes == 1
        assert gateway.app[STREAM_STATS].polls == 3  # SSE_POLL_LIMIT reads, then the close
        # Three polls 0.1 s apart; the first may come at once: the spawn's row, offered to the
        # stream by the gateway's LISTEN before its first event went out, woke it early.
        assert 0.19 <= time.monotonic() - started < 5
    finally:
        await gateway.stop()


async def test_a_thousand_dropped_streams_leave_no_task_subscription_or_stream_behind(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
) -> None:
    # One token opens 200 streams at once: lift STREAMS_PER_PRINCIPAL (tests/security covers it).
    live_gateway = LiveGateway(settings.replace(streams_per_principal=1000))
    await live_gateway.start()
    try:
        dispatcher = live_gateway.app[DISPATCHER]
        stats = live_gateway.app[STREAM_STATS]
        workspace_id = member.workspace_id
        task_ids = [await spawn(task_store, workspace_id, "validation_kit") for _ in range(50)]
        tasks_before = len(asyncio.all_tasks())
        connector = aiohttp.TCPConnector(limit=200, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=stream_timeout(20)) as client:

            async def open_and_drop(task_id: UUID) -> None:
                response = await client.get(
                    progress_url(live_gateway, task_id), headers=bearer(member.token)
                )
                assert response.status == 200
                await response.content.readuntil(b"\r\n\r\n")  # the first event arrived
                response.close()  # the client goes away mid-stream

            for start in range(0, 1000, 200):
                await asyncio.gather(
                    *(open_and_drop(task_ids[i % len(task_ids)]) for i in range(start, start + 200))
                )

        async def settled() -> bool:
            return stats.open == 0 and dispatcher.subscribed_channels == 0

        await wait_for(settled, timeout_s=10)
        assert stats.opened == 1000 and stats.closed == 1000
        assert dispatcher.watch_count == 0 and dispatcher.channel_count == 0
        assert len(live_gateway.app[STREAMS]) == 0
    finally:
        await live_gateway.stop()
    await asyncio.sleep(0.2)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_shutdown_ends_open_streams_promptly_and_cleanly(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    gateway = LiveGateway(settings)
    await gateway.start()
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")

    async def watch_until_closed() -> list[Event]:
        _, received = await collect(session, progress_url(gateway, task_id), member.token)
        return received

    watchers = [asyncio.create_task(watch_until_closed()) for _ in range(20)]
    await wait_for(lambda: asyncio.sleep(0, result=gateway.app[STREAM_STATS].open == 20))
    started = time.monotonic()
    await gateway.stop()
    results = await asyncio.gather(*watchers)  # a truncated body would raise here
    assert time.monotonic() - started < 2.0
    assert all(len(received) == 1 for received in results)


async def test_the_stream_ends_on_a_terminal_state_written_by_the_reaper(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
    db: Any,
    session: aiohttp.ClientSession,
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    await claim_by_hand(
        db, task_id, runner_id="ghost", started_ago_s=0, beat_ago_s=3600, timeout_s=600
    )
    watcher = asyncio.create_task(
        collect(session, progress_url(live_gateway, task_id), member.token)
    )
    await asyncio.sleep(0.3)
    runners.start(builtin_registry())  # its reaper fails the orphan and publishes it
    _, received = await asyncio.wait_for(watcher, 10)
    assert received[-1].payload["status"] == "failed"
    assert "runner lost" in received[-1].payload["error"]
    await wait_for_status(task_store, task_id, {"failed"})


async def test_an_idle_stream_carries_keep_alive_comments(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    gateway = LiveGateway(settings.replace(sse_ping_interval_s=0.2, sse_idle_timeout_s=30))
    await gateway.start()
    try:
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        async with session.get(progress_url(gateway, task_id), headers=bearer(member.token)) as r:
            await r.content.readuntil(b"\r\n\r\n")  # the first event
            comments = [await r.content.readuntil(b"\r\n\r\n") for _ in range(2)]
        assert comments == [b": ping\r\n\r\n", b": ping\r\n\r\n"]
    finally:
        await gateway.stop()


async def test_one_pinger_keeps_every_stream_alive_and_an_ended_stream_leaves_it_at_once(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    session: aiohttp.ClientSession,
) -> None:
    """With direct writes every stream is the shared pinger's (no ping task of its own); else
    each keeps aiohttp-sse's task. Streams opened and closed again and again leave nothing
    behind in the pinger."""
    gateway = LiveGateway(settings.replace(sse_ping_interval_s=0.2, sse_idle_timeout_s=30))
    await gateway.start()
    try:
        pinger, stats = gateway.app[PINGER], gateway.app[STREAM_STATS]

        async def all_closed() -> bool:
            return stats.open == 0

        tasks = [await spawn(task_store, member.workspace_id, "validation_kit") for _ in range(5)]
        for _ in range(3):
            opened = []
            for task_id in tasks * 6:
                url = progress_url(gateway, task_id)
                response = await session.get(url, headers=bearer(member.token))
                await response.content.readuntil(b"\r\n\r\n")  # the first event
                opened.append(response)
            own_tasks = [t for t in asyncio.all_tasks() if "EventSourceResponse._ping" in repr(t)]
            if settings.sse_direct_write:
                assert len(pinger) == 30 and own_tasks == []
            else:
                assert len(pinger) == 0 and len(own_tasks) == 30
            for response in opened:
                response.close()
            await wait_for(all_closed)
            assert len(pinger) == 0
    finally:
        await gateway.stop()


async def test_only_the_direct_mode_writes_updates_straight_to_the_socket(
    settings: Settings,
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
    session: aiohttp.ClientSession,
) -> None:
    runners.start(builtin_registry())
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.05)
    _, received = await collect(session, progress_url(live_gateway, task_id), member.token)
    assert received[-1].payload["status"] == "completed"
    written = live_gateway.app[DISPATCHER].stats.written
    stats = live_gateway.app[STREAM_STATS]
    if settings.sse_direct_write:
        assert written > 0
    else:
        assert written == 0 and stats.events == len(received)


async def test_an_http_1_0_client_gets_every_event_intact(
    settings: Settings,
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    runners: RunnerHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HTTP/1.0 has no chunked framing: the stream must not write hand-made chunks into its
    body. In direct mode it is refused with an ERROR and written through the response."""
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.05)
    url = urlsplit(live_gateway.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        request = f"GET /api/tasks/{task_id}/progress HTTP/1.0\r\n{bearer_line(member.token)}\r\n"
        with caplog.at_level(logging.ERROR, logger="gateway.direct_write"):
            writer.write(request.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            runners.start(builtin_registry())  # the updates start once we are watching
            body = await asyncio.wait_for(reader.read(), 20)  # the server closes at the end
    finally:
        writer.close()
    assert b" 200 " in head.split(b"\r\n")[0] and b"transfer-encoding" not in head.lower()
    events = [e for e in body.split(b"\r\n\r\n") if e and not e.startswith(b": ping")]
    payloads = [json.loads(event_data(event)) for event in events]
    versions = [p["version"] for p in payloads]
    assert versions == sorted(set(versions)) and len(versions) >= 3
    assert payloads[-1]["status"] == "completed"
    refused = [r for r in caplog.records if r.name == "gateway.direct_write"]
    assert len(refused) == (1 if settings.sse_direct_write else 0)
    if refused:
        assert refused[0].levelno == logging.ERROR and "not chunked" in refused[0].getMessage()


def bearer_line(token: str) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in bearer(token).items())


def event_data(event: bytes) -> bytes:
    """The `data:` of one event, which must be nothing but `id:`, `data:` and `retry:` lines."""
    lines = event.split(b"\r\n")
    assert lines[0].startswith(b"id: "), event[:80]
    assert all(line.startswith((b"id: ", b"data: ", b"retry: ")) for line in lines), event[:80]
    return b"".join(line.removeprefix(b"data: ") for line in lines if line.startswith(b"data: "))
