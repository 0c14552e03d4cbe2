"""Both processes behind Debian's PgBouncer in transaction pooling mode: with
DATABASE_LISTEN_URL their one LISTEN goes straight to PostgreSQL; without it the LISTEN hears
nothing, and they say so and poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import RunnerHarness, bearer, builtin_registry, fast_settings, wait_for
from tests.log_capture import captured_logs
from tests.pgbouncer import PgBouncer
from tests.sse_client import events, stream_timeout


@pytest.fixture
def bouncer(clean_database: str) -> Iterator[PgBouncer]:
    started = PgBouncer(clean_database)
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture
async def bounced_db(bouncer: PgBouncer) -> AsyncIterator[Database]:
    """A pool through PgBouncer; its LISTEN too (no DATABASE_LISTEN_URL)."""
    db = await Database.connect(Settings(database_url=bouncer.url), maxsize=5, name="test")
    yield db
    await db.close()


async def listening(direct_db: Database, application: str) -> bool:
    """A LISTEN connection of `application` straight from a client (not PgBouncer's own)."""
    rows = await direct_db.fetch_all(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %(name)s "
        "AND query LIKE 'LISTEN%%' AND state = 'idle'",
        {"name": application},
    )
    return bool(rows)


async def test_with_a_direct_listen_url_runner_and_gateway_hear_at_once(
    aiohttp_client: Any, bouncer: PgBouncer, db: Database, clean_database: str
) -> None:
    """RUNNER_POLL_INTERVAL is a minute: only the LISTEN can wake the runner in time
    (everything but the LISTEN goes through PgBouncer)."""
    settings = fast_settings(
        bouncer.url, database_listen_url=clean_database, runner_poll_interval_s=60.0
    )
    client = await aiohttp_client(create_app(settings))
    runner_db = await Database.connect(settings, maxsize=5, name="praxiom-runner")
    harness = RunnerHarness(settings, runner_db, settings.redis_url)
    harness.start(builtin_registry())
    try:
        await wait_for(lambda: listening(db, "praxiom-runner"))
        await wait_for(lambda: listening(db, "praxiom-gateway-events"))
        member = await AccountStore(runner_db).create_token(workspace="acme", user="ann")
        resp = await client.post(
            "/api/tasks/spawn",
            json={"task_type": "validation_kit", "params": {"step_seconds": 0.05}},
            headers=bearer(member.token),
        )
        assert resp.status == 202, await resp.text()
        task_id = (await resp.json())["id"]

        async def claimed() -> bool:
            task = await TaskStore(db).get_task(UUID(task_id))
            return task is not None and task.status != "pending"

        await wait_for(claimed, timeout_s=15)  # well before the minute's poll
        async with client.get(
            f"/api/tasks/{task_id}/progress", headers=bearer(member.token),
            timeout=stream_timeout(20),
        ) as stream:  # fmt: skip
            seen = [event.payload["status"] async for event in events(stream)]
        assert seen[-1] == "completed"
    finally:
        await harness.stop_all()
        await runner_db.close()


async def test_without_a_listen_url_both_warn_and_poll(
    aiohttp_client: Any, bouncer: PgBouncer, bounced_db: Database
) -> None:
    settings = fast_settings(
        bouncer.url, runner_poll_interval_s=0.3, database_listen_probe_timeout_s=1.0
    )
    with captured_logs() as logs:

        def unheard() -> list[dict[str, Any]]:
            return [r for r in logs.records() if r.get("action") == "listen_unheard"]

        await aiohttp_client(create_app(settings))
        harness = RunnerHarness(settings, bounced_db, settings.redis_url)
        harness.start(builtin_registry())
        try:
            # The gateway's and the runner's: two loggers.
            await wait_for(lambda: asyncio.sleep(0, len({r["logger"] for r in unheard()}) == 2))
            member = await AccountStore(bounced_db).create_token(workspace="acme", user="ann")
            store = TaskStore(bounced_db)
            task = await store.insert_task(
                workspace_id=member.workspace_id,
                task_type="validation_kit",
                params={"step_seconds": 0.05},
            )

            async def done() -> bool:  # claimed by the runner's poll: nobody heard the NOTIFY
                found = await store.get_task(task.id)
                return found is not None and found.status == "completed"

            await wait_for(done, timeout_s=20)
        finally:
            await harness.stop_all()
    for record in unheard():
        assert record["level"] == "WARNING"
        assert "set DATABASE_LISTEN_URL" in record["message"]
