"""WorkspaceStream, with no services: the event id (a read's mark only on its last event, an
`id:`-only block when nothing was new), per-task versions that never go down, a slow client
that gets each task's newest state and every terminal one, a task not seen before checked in
PostgreSQL first, and the periodic re-read that ends the stream when access is gone."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from aiohttp import web

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import GatewayStore, TaskAccess
from praxiom_progress.gateway.stream import StreamStats
from praxiom_progress.gateway.workspace import WorkspaceStream
from praxiom_progress.gateway.workspace_reads import WorkspaceRead, WorkspaceReads
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.settings import Settings

WORKSPACE = uuid4()
_EVENT = re.compile(rb"id: (\d+)\r\n((?:data: [^\r]*\r\n)*)\r\n")


def task(task_id: UUID, version: int, status: str = "running", workspace: UUID = WORKSPACE) -> Task:
    row = {"id": task_id, "status": status, "task_type": "validation_kit", "progress_pct": 50,
           "phase": "running", "message": "", "started_at": None, "completed_at": None,
           "heartbeat_at": None, "error": None, "result_data": {}, "version": version,
           "workspace_id": workspace}  # fmt: skip
    return Task.from_row(row)


def published(task_id: UUID, version: int, terminal: bool = False) -> Update:
    data = json.dumps({"id": str(task_id), "version": version}).encode()
    return Update.of(version, data, terminal, task_id=str(task_id))


class Response:
    """Stands in for the StreamResponse: records every write; `gate` closed: a client that
    stopped reading (the write waits)."""

    def __init__(self) -> None:
        self.body = b""
        self.writes = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.wrote = asyncio.Event()

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        self.body += data
        self.writes += 1
        self.wrote.set()

    async def until(self, check: Any) -> None:
        """Until `check()` holds, looked at after each write (fails after 5 s)."""
        async with asyncio.timeout(5):
            while not check():
                self.wrote.clear()
                await self.wrote.wait()

    def sent(self) -> list[tuple[str, int]]:
        return [(p["id"], p["version"]) for _, p in self.events() if p]

    def events(self) -> list[tuple[int, dict[str, Any] | None]]:
        """(id, payload) of every block; payload None for an `id:`-only block."""
        found = []
        for mark, lines in _EVENT.findall(self.body):
            payload = json.loads(lines[len(b"data: ") : -2]) if lines else None
            found.append((int(mark), payload))
        return found


class Reads:
    """Stands in for WorkspaceReads: each `changes` answers the next of `answers`."""

    def __init__(self, *answers: WorkspaceRead) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []

    async def changes(self, digest: bytes, workspace_id: UUID, since: int) -> WorkspaceRead:
        self.asked.append(since)
        return self.answers.pop(0) if self.answers else WorkspaceRead(True, since, [])


class Store:
    """Stands in for GatewayStore.authorize_task: the tasks PostgreSQL holds."""

    def __init__(self, *tasks: Task) -> None:
        self.tasks = {t.id: t for t in tasks}

    async def authorize_task(self, digest: bytes, task_id: UUID) -> TaskAccess:
        found = self.tasks.get(task_id)
        decision = Decision.ALLOWED if found else Decision.NOT_FOUND
        return TaskAccess(None, decision, found)


class Up:
    def available_for(self, stream: object) -> bool:
        return True


def make(reads: Reads, store: Store, **settings: Any) -> tuple[WorkspaceStream, StreamStats]:
    stats = StreamStats()
    stream = WorkspaceStream(
        WORKSPACE, b"digest", cast(WorkspaceReads, reads), cast(GatewayStore, store),
        Settings().replace(**settings), stats, LimitStats(),
    )  # fmt: skip
    return stream, stats


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start(
    running: list[asyncio.Task[None]], stream: WorkspaceStream, first: WorkspaceRead,
    response: Response,
) -> None:  # fmt: skip
    run = stream.run(first, 1500, cast(web.StreamResponse, response), Up())
    running.append(asyncio.create_task(run))


async def test_only_a_reads_last_event_carries_its_mark_and_a_quiet_read_moves_it_alone(
    running: list[asyncio.Task[None]],
) -> None:
    a, b = uuid4(), uuid4()
    reads = Reads(WorkspaceRead(True, 70, []))  # the re-read: nothing new, a later mark
    stream, _ = make(reads, Store(), sse_idle_timeout_s=0.05)
    response = Response()
    first = WorkspaceRead(True, 50, [task(a, 3), task(b, 1)])
    start(running, stream, first, response)
    await response.until(lambda: len(response.events()) >= 3)
    assert response.body.startswith(b"retry: 1500\r\n")
    events = response.events()
    assert [(mark, p and p["id"]) for mark, p in events[:2]] == [(0, str(a)), (50, str(b))]
    assert events[2] == (70, None)  # no data: no event fires, the client's mark moves on
    assert reads.asked[0] == 50


async def test_versions_never_go_down_and_a_slow_client_gets_each_tasks_newest(
    running: list[asyncio.Task[None]],
) -> None:
    a, b = uuid4(), uuid4()
    stream, _ = make(Reads(), Store())
    response = Response()
    first = WorkspaceRead(True, 9, [task(a, 1), task(b, 1)])
    start(running, stream, first, response)
    await response.until(lambda: response.writes == 1)
    response.gate.clear()  # the client stops reading
    assert stream.deliver(published(a, 2), 0.0) == 0
    await asyncio.sleep(0.01)  # the stream's task is now stuck writing a@2
    outcomes = [stream.deliver(published(a, v), 0.0) for v in range(3, 40)]
    outcomes.append(stream.deliver(published(b, 5, terminal=True), 0.0))
    outcomes.append(stream.deliver(published(b, 4), 0.0))  # older than what waits: ignored
    outcomes.append(stream.deliver(published(a, 1), 0.0))  # older than sent: ignored
    assert outcomes.count(-1) == 36  # each replaced the one waiting for its task
    response.gate.set()
    await response.until(lambda: any(p and p["version"] == 5 for _, p in response.events()))
    sent = [(p["id"], p["version"]) for _, p in response.events() if p]
    assert [v for t, v in sent if t == str(a)] == [1, 2, 39]  # the newest, nothing between
    assert [v for t, v in sent if t == str(b)] == [1, 5]  # the terminal state, never dropped


async def test_a_task_not_seen_before_is_read_from_postgresql_and_a_foreign_one_dropped(
    running: list[asyncio.Task[None]],
) -> None:
    born, foreign = uuid4(), uuid4()
    store = Store(task(born, 2), task(foreign, 7, workspace=uuid4()))
    stream, stats = make(Reads(), store)
    response = Response()
    start(running, stream, WorkspaceRead(True, 5, []), response)
    await response.until(lambda: response.writes == 1)
    stream.deliver(published(born, 1), 0.0)  # its spawn, published
    stream.deliver(published(foreign, 7), 0.0)  # forged onto this workspace's channel
    await response.until(lambda: len(response.sent()) >= 2)
    assert stats.foreign_tasks == 1
    assert response.sent() == [
        (str(born), 1),
        (str(born), 2),
    ]  # as published, then the row's newer state
    stream.deliver(published(born, 3), 0.0)  # known now: forwarded as published
    await response.until(lambda: (str(born), 3) in response.sent())


async def test_the_periodic_re_read_ends_the_stream_when_access_is_gone() -> None:
    reads = Reads(WorkspaceRead(False, 60, []))
    stream, _ = make(reads, Store(), sse_idle_timeout_s=0.05)
    limit_stats = stream._limit_stats
    response = Response()
    async with asyncio.timeout(5):  # run returns: the handler then ends the response
        await stream.run(
            WorkspaceRead(True, 50, []), 1000, cast(web.StreamResponse, response), Up()
        )
    assert limit_stats.streams_access_lost == 1


class Transport:
    """Stands in for the socket `deliver` writes chunks to (gateway.direct_write)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


async def test_a_burst_of_updates_is_written_straight_to_the_socket_as_one_chunk(
    running: list[asyncio.Task[None]],
) -> None:
    a, b = uuid4(), uuid4()
    stream, _ = make(Reads(), Store())
    response, transport = Response(), Transport()
    run = stream.run(
        WorkspaceRead(True, 9, [task(a, 1), task(b, 1)]), 1000,
        cast(web.StreamResponse, response), Up(), cast(asyncio.Transport, transport),
    )  # fmt: skip
    running.append(asyncio.create_task(run))
    await response.until(lambda: response.writes == 1)
    await asyncio.sleep(0.01)  # the stream's task waits: `deliver` may write
    outcomes = [stream.deliver(published(t, v), 0.0) for v in (2, 3) for t in (a, b)]
    assert outcomes == [1, 1, 1, 1] and transport.chunks == []  # gathered in this pass ...
    await asyncio.sleep(0)
    [chunk] = transport.chunks  # ... and written as one chunk, in order
    size, _, body = chunk.partition(b"\r\n")
    assert int(size, 16) == len(body) - 2
    sent = [json.loads(lines[len(b"data: ") : -2]) for _, lines in _EVENT.findall(body)]
    assert [(p["id"], p["version"]) for p in sent] == [
        (str(a), 2), (str(b), 2), (str(a), 3), (str(b), 3),
    ]  # fmt: skip
    assert response.writes == 1  # the stream's task wrote nothing of it
