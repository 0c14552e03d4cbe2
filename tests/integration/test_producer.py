"""`praxiom_progress.spawn` / `cancel` (aiopg) and `spawn_sync` / `cancel_sync` (psycopg2) on an
application's own connection, inside its own transaction, against a real runner whose poll is an
hour long: whatever it claims or stops, it heard of through the NOTIFY sent at commit.

Rolled back: no task, no runner told (the next NOTIFY heard is a later, committed write's).
Committed: claimed (or stopped) at once. The spawn's checks are the HTTP spawn's: the same
field errors, compared with the gateway's own 422. A refusal leaves the transaction usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import aiopg
import psycopg2
import pytest

import praxiom_progress
from praxiom_progress import HandlerRegistry, TaskContext
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.channels import TASK_CANCELLED_NOTIFY, TASK_PENDING_NOTIFY
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import (
    LiveGateway,
    ProgressRecorder,
    RunnerHarness,
    bearer,
    wait_for,
    wait_for_status,
)
from tests.sse_client import events, stream_timeout

HOUR_S = 3600.0


class Handlers:
    """`quick` ends at once; `endless` works until stopped, noting which tasks were stopped."""

    def __init__(self) -> None:
        self.started: set[UUID] = set()
        self.stopped: set[UUID] = set()

    async def quick(self, task: TaskContext) -> dict[str, Any]:
        return {"spawned_by": task.spawned_by}

    async def endless(self, task: TaskContext) -> dict[str, Any]:
        self.started.add(task.task_id)
        try:
            # A stop may land in the report too: its write waits for a row lock an open
            # transaction holds (another task's, in the same statement).
            await task.report_progress("working", 10, "Working until stopped")
            await asyncio.sleep(HOUR_S)
        finally:
            self.stopped.add(task.task_id)
        return {}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register("quick", self.quick)
        registry.register("endless", self.endless)
        return registry


class Producer:
    """One application connection, driven the same way for aiopg and for psycopg2 (whose
    blocking calls run in a thread, so the in-process runner keeps running meanwhile)."""

    def __init__(self, kind: str, database_url: str) -> None:
        self.kind = kind
        self.database_url = database_url
        self.conn: Any = None

    async def open(self) -> None:
        if self.kind == "aiopg":
            # An application's own connection, with aiopg's defaults (hstore and all).
            self.conn = await aiopg.connect(self.database_url)
        else:  # psycopg2's defaults: no UUID typecaster, a transaction begun implicitly
            self.conn = await asyncio.to_thread(psycopg2.connect, self.database_url)

    async def close(self) -> None:
        if self.kind == "aiopg":
            self.conn.close()
        else:
            await asyncio.to_thread(self.conn.close)

    async def sql(self, statement: str) -> None:
        if self.kind == "aiopg":
            async with self.conn.cursor() as cur:
                await cur.execute(statement)
        else:
            await asyncio.to_thread(_execute_sync, self.conn, statement)

    async def begin(self) -> None:
        if self.kind == "aiopg":  # aiopg is always autocommit: a transaction is asked for
            await self.sql("BEGIN")

    async def commit(self) -> None:
        if self.kind == "aiopg":
            await self.sql("COMMIT")
        else:
            await asyncio.to_thread(self.conn.commit)

    async def rollback(self) -> None:
        if self.kind == "aiopg":
            await self.sql("ROLLBACK")
        else:
            await asyncio.to_thread(self.conn.rollback)

    async def spawn(self, task_type: str, **kwargs: Any) -> dict[str, Any]:
        if self.kind == "aiopg":
            return dict(await praxiom_progress.spawn(self.conn, task_type, **kwargs))
        call = praxiom_progress.spawn_sync
        return dict(await asyncio.to_thread(call, self.conn, task_type, **kwargs))

    async def cancel(self, task_id: UUID | str) -> dict[str, Any]:
        if self.kind == "aiopg":
            return dict(await praxiom_progress.cancel(self.conn, task_id))
        return dict(await asyncio.to_thread(praxiom_progress.cancel_sync, self.conn, task_id))


def _execute_sync(conn: Any, statement: str) -> None:
    with conn.cursor() as cur:
        cur.execute(statement)


@pytest.fixture(params=["aiopg", "psycopg2"])
async def producer(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Producer]:
    app = Producer(request.param, settings.database_url)
    await app.open()
    yield app
    await app.close()


class Heard:
    """The NOTIFYs of one channel, as a runner hears them."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def next(self) -> str:
        note = await asyncio.wait_for(self.conn.notifies.get(), 10)
        return str(note.payload)


async def _listening(settings: Settings, channel: str) -> Heard:
    conn = await aiopg.connect(settings.database_url)
    async with conn.cursor() as cur:
        await cur.execute(f'LISTEN "{channel}"')
    return Heard(conn)


@pytest.fixture
async def heard_pending(settings: Settings) -> AsyncIterator[Heard]:
    heard = await _listening(settings, TASK_PENDING_NOTIFY)
    yield heard
    heard.conn.close()


@pytest.fixture
async def heard_cancelled(settings: Settings) -> AsyncIterator[Heard]:
    heard = await _listening(settings, TASK_CANCELLED_NOTIFY)
    yield heard
    heard.conn.close()


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    yield Handlers()


async def _runner_listening(db: Database) -> bool:
    """Its LISTEN connection is up: from now on a NOTIFY reaches it."""
    row = await db.fetch_one(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'praxiom-runner' AND query LIKE 'LISTEN%%'"
    )
    return row is not None and row["n"] > 0


async def _start_runner(runners: RunnerHarness, handlers: Handlers, db: Database) -> None:
    """A runner that polls once an hour: a task it claims soon, a NOTIFY woke it for."""
    runners.start(handlers.registry(), runner_poll_interval_s=HOUR_S)
    await wait_for(lambda: _runner_listening(db), 20)
    types = await db.fetch_all("SELECT name FROM task_types WHERE name = 'quick'")
    assert types, "the runner catalogued its types before it listened"


# -- spawn --------------------------------------------------------------------------------------


async def test_a_rolled_back_spawn_leaves_no_task_and_wakes_no_runner(
    producer: Producer,
    workspace_id: UUID,
    task_store: TaskStore,
    heard_pending: Heard,
) -> None:
    await producer.begin()
    gone = await producer.spawn("validation_kit", workspace_id=workspace_id)
    assert gone["status"] == "pending"
    assert await task_store.get_task(UUID(gone["id"])) is None  # not visible before commit
    await producer.rollback()
    assert await task_store.get_task(UUID(gone["id"])) is None

    await producer.begin()
    kept = await producer.spawn("validation_kit", workspace_id=workspace_id)
    await producer.commit()
    # NOTIFYs arrive in commit order: the first one heard is the committed task's.
    assert await heard_pending.next() == kept["id"]
    assert await task_store.get_task(UUID(kept["id"])) is not None


async def test_a_committed_spawn_is_claimed_at_once(
    producer: Producer,
    workspace_id: UUID,
    task_store: TaskStore,
    runners: RunnerHarness,
    handlers: Handlers,
    db: Database,
) -> None:
    await _start_runner(runners, handlers, db)
    await producer.begin()
    payload = await producer.spawn("quick", workspace_id=workspace_id, spawned_by="order:42")
    await producer.sql("SELECT 1")  # the application's own work, in the same transaction
    await producer.commit()
    # An hour's poll: only the commit's NOTIFY can have woken the runner.
    done = await wait_for_status(task_store, UUID(payload["id"]), {"completed"}, 20)
    assert done.result_data == {"spawned_by": "order:42"}
    assert done.spawned_by == "order:42"


async def test_the_rolled_back_spawn_is_never_claimed(
    producer: Producer,
    workspace_id: UUID,
    task_store: TaskStore,
    runners: RunnerHarness,
    handlers: Handlers,
    db: Database,
) -> None:
    await _start_runner(runners, handlers, db)
    await producer.begin()
    gone = await producer.spawn("quick", workspace_id=workspace_id)
    await producer.rollback()
    await producer.begin()
    kept = await producer.spawn("quick", workspace_id=workspace_id)
    await producer.commit()
    await wait_for_status(task_store, UUID(kept["id"]), {"completed"}, 20)
    assert await task_store.get_task(UUID(gone["id"])) is None
    rows = await db.fetch_all("SELECT id FROM background_tasks")
    assert [str(row["id"]) for row in rows] == [kept["id"]]


async def test_the_payload_is_the_tasks_as_a_stream_shows_it(
    producer: Producer, workspace_id: UUID
) -> None:
    await producer.begin()
    payload = await producer.spawn(
        "validation_kit", workspace_id=str(workspace_id), params={"step_seconds": 0.1}
    )
    await producer.commit()
    assert UUID(payload["id"])
    assert payload["task_type"] == "validation_kit"
    assert payload["status"] == "pending"
    assert payload["version"] == 1
    assert payload["started_at"] is None
    assert sorted(payload) == sorted(
        ["id", "status", "task_type", "progress_pct", "phase", "message", "started_at",
         "completed_at", "heartbeat_at", "error", "result_data", "version"]
    )  # fmt: skip


# -- the HTTP spawn's checks --------------------------------------------------------------------

REFUSED = [
    ("no_such_type", {}),
    ("validation_kit", {"step_seconds": "slow", "fail_at": "nowhere"}),
    ("validation_kit", {"step_seconds": -1}),
]


@pytest.mark.parametrize(("task_type", "params"), REFUSED)
async def test_a_refused_spawn_carries_the_http_spawns_field_errors(
    producer: Producer, workspace_id: UUID, api: Any, member: Any, task_type: str, params: Any
) -> None:
    body = {"task_type": task_type, "workspace_id": str(workspace_id), "params": params}
    response = await api.post("/api/tasks/spawn", json=body, headers=bearer(member.token))
    assert response.status == 422
    expected_fields = (await response.json())["fields"]
    await producer.begin()
    with pytest.raises(praxiom_progress.SpawnRejected) as refused:
        await producer.spawn(task_type, workspace_id=workspace_id, params=params)
    assert refused.value.fields == expected_fields
    assert isinstance(refused.value, ValueError)
    # Nothing was written: the application's transaction goes on and commits.
    kept = await producer.spawn("validation_kit", workspace_id=workspace_id)
    await producer.commit()
    assert kept["status"] == "pending"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"step_seconds": float("nan")}, "Must be storable JSON"),  # JSON, hence jsonb, has none
        ({"company": "a\x00b"}, "Must not contain the NUL character"),
        ({"company": object()}, "Must be storable JSON"),
    ],
)
async def test_params_jsonb_cannot_store_are_refused(
    producer: Producer, workspace_id: UUID, params: dict[str, Any], error: str
) -> None:
    with pytest.raises(praxiom_progress.SpawnRejected) as refused:
        await producer.spawn("validation_kit", workspace_id=workspace_id, params=params)
    [message] = refused.value.fields["params"]
    assert message.startswith(error)


async def test_a_missing_workspace_is_not_found_and_the_transaction_goes_on(
    producer: Producer, workspace_id: UUID, task_store: TaskStore
) -> None:
    await producer.begin()
    with pytest.raises(praxiom_progress.NotFound, match="no workspace"):
        await producer.spawn("validation_kit", workspace_id=uuid4())
    kept = await producer.spawn("validation_kit", workspace_id=workspace_id)
    await producer.commit()
    assert await task_store.get_task(UUID(kept["id"])) is not None


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"workspace_id": None}, {"workspace_id": ["Missing data for required field."]}),
        ({"workspace_id": "acme"}, {"workspace_id": ["Not a valid UUID."]}),
        ({"params": ["rows"]}, {"params": ["Not a valid mapping type."]}),
        ({"task_type": 7}, {"task_type": ["Not a valid string."]}),
    ],
)
async def test_bad_arguments_are_refused_by_field(
    producer: Producer, workspace_id: UUID, kwargs: dict[str, Any], fields: dict[str, Any]
) -> None:
    arguments = {"task_type": "validation_kit", "workspace_id": workspace_id, **kwargs}
    task_type = arguments.pop("task_type")
    with pytest.raises(praxiom_progress.SpawnRejected) as refused:
        await producer.spawn(task_type, **arguments)
    assert refused.value.fields == fields
    assert refused.value.message == "The spawn's arguments are not valid"


# -- cancel -------------------------------------------------------------------------------------


async def test_cancel_rolled_back_tells_no_runner_and_committed_stops_the_handler(
    producer: Producer,
    workspace_id: UUID,
    task_store: TaskStore,
    runners: RunnerHarness,
    handlers: Handlers,
    db: Database,
    heard_cancelled: Heard,
) -> None:
    await _start_runner(runners, handlers, db)
    first, second = [
        await task_store.insert_task(workspace_id=workspace_id, task_type="endless", params={})
        for _ in range(2)
    ]
    for task in (first, second):
        await wait_for_status(task_store, task.id, {"running"}, 20)
    # Claimed is not started: a cancel before the handler runs stops no handler.
    await wait_for(lambda: asyncio.sleep(0, result={first.id, second.id} <= handlers.started), 20)

    await producer.begin()
    cancelled = await producer.cancel(first.id)
    assert cancelled["status"] == "cancelled"
    await producer.rollback()

    await producer.begin()
    await producer.cancel(str(second.id))
    await producer.commit()
    assert await heard_cancelled.next() == str(second.id)  # never the rolled-back one's
    await wait_for(_stopped(handlers, second.id), 20)
    assert first.id not in handlers.stopped
    still = await task_store.get_task(first.id)
    assert still is not None and still.status == "running"

    await producer.begin()
    await producer.cancel(first.id)
    await producer.commit()
    await wait_for(_stopped(handlers, first.id), 20)
    ended = await task_store.get_task(first.id)
    assert ended is not None and ended.status == "cancelled"


def _stopped(handlers: Handlers, task_id: UUID) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return task_id in handlers.stopped

    return check


async def test_cancel_refusals_are_the_http_cancels_and_leave_the_transaction_usable(
    producer: Producer, workspace_id: UUID, task_store: TaskStore
) -> None:
    task = await task_store.insert_task(
        workspace_id=workspace_id, task_type="validation_kit", params={}
    )
    await task_store.cancel_task(task.id)
    await producer.begin()
    with pytest.raises(praxiom_progress.TaskAlreadyFinished) as finished:
        await producer.cancel(task.id)
    assert finished.value.payload["status"] == "cancelled"
    assert finished.value.payload["id"] == str(task.id)
    with pytest.raises(praxiom_progress.NotFound):
        await producer.cancel(uuid4())
    kept = await producer.spawn("validation_kit", workspace_id=workspace_id)
    await producer.commit()
    assert await task_store.get_task(UUID(kept["id"])) is not None


async def test_a_bad_task_id_or_connection_is_told_plainly(producer: Producer) -> None:
    with pytest.raises(ValueError, match="not a task id: 'nope'"):
        await producer.cancel("nope")
    with pytest.raises(TypeError, match="task_id must be a UUID or a str"):
        await producer.cancel(42)  # type: ignore[arg-type]
    if producer.kind == "aiopg":
        with pytest.raises(TypeError, match="use `await spawn`"):
            praxiom_progress.spawn_sync(producer.conn, "quick", workspace_id=uuid4())
    else:
        with pytest.raises(TypeError, match="use spawn_sync"):
            await praxiom_progress.spawn(producer.conn, "quick", workspace_id=uuid4())
    with pytest.raises(TypeError, match="not NoneType"):
        await praxiom_progress.cancel(None, uuid4())  # type: ignore[arg-type]


# -- cursors ------------------------------------------------------------------------------------


async def test_an_aiopg_cursor_in_a_transaction_block(
    settings: Settings, workspace_id: UUID, task_store: TaskStore
) -> None:
    async with aiopg.connect(settings.database_url) as conn, conn.cursor() as cur:
        async with cur.begin():
            payload = await praxiom_progress.spawn(cur, "validation_kit", workspace_id=workspace_id)
            await cur.execute("SELECT 1")  # the cursor is still the application's
            assert await cur.fetchone() == (1,)
    assert await task_store.get_task(UUID(payload["id"])) is not None


def test_a_psycopg2_cursor_of_tuples(settings: Settings, workspace_id: UUID) -> None:
    conn = psycopg2.connect(settings.database_url)
    try:
        with conn, conn.cursor() as cur:  # `with conn`: commit on success
            payload = praxiom_progress.spawn_sync(cur, "validation_kit", workspace_id=workspace_id)
            cancelled = praxiom_progress.cancel_sync(cur, payload["id"])
        assert cancelled["status"] == "cancelled"
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM background_tasks WHERE id = %s", (payload["id"],))
            assert cur.fetchone() == ("cancelled",)
    finally:
        conn.close()


async def test_a_committed_cancel_reaches_an_open_stream_without_a_publish(
    producer: Producer,
    settings: Settings,
    member: IssuedToken,
    workspace_id: UUID,
    task_store: TaskStore,
    recorder: ProgressRecorder,
) -> None:
    """The stream's idle re-read is minutes away: only the commit's NOTIFY, which every
    gateway hears, can bring it the cancelled state; nothing is published to Redis."""
    gateway = LiveGateway(settings.replace(sse_idle_timeout_s=300))
    await gateway.start()
    task = await task_store.insert_task(workspace_id=workspace_id, task_type="research", params={})
    try:
        async with aiohttp.ClientSession(timeout=stream_timeout(10)) as session:
            url = f"{gateway.url}/api/tasks/{task.id}/progress"
            async with session.get(url, headers=bearer(member.token)) as response:
                stream = events(response)
                first = await anext(stream)
                await producer.begin()
                await producer.cancel(task.id)
                still = await task_store.get_task(task.id)
                assert still is not None and still.status == "pending"  # not yet committed
                await producer.commit()
                rest = [event.payload["status"] async for event in stream]
    finally:
        await gateway.stop()
    assert [first.payload["status"], *rest] == ["pending", "cancelled"]
    assert recorder.of(task.id) == []
