"""ProgressStream, the one owner of an open stream's state: written straight to its socket when
the socket can take it, else a mailbox that keeps only the newest state, never goes back, and
never loses the end; the idle sweeper's view of it; its own task's loop.

The loop tests run in both write modes: with direct writes (a transport handed to `run`) and
without (every write through the response, as SSE_DIRECT_WRITE=0 or a refused stream does).
The stand-in response writes each frame to the same socket as one chunk, as aiohttp's chunked
writer does, so the peer reads one byte stream either way.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.settings import Settings

NOW = 100.0


def update(version: int, terminal: bool = False) -> Update:
    return Update.of(version, b'{"version":%d}' % version, terminal)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def task_row(task_id: UUID, version: int, status: str = "running") -> Task:
    row = {"id": task_id, "status": status, "task_type": "validation_kit", "progress_pct": 50,
           "phase": "running", "message": "", "started_at": None, "completed_at": None,
           "heartbeat_at": None, "error": None, "result_data": {}, "version": version}  # fmt: skip
    return Task.from_row(row)


class RowReader:
    """Stands in for gateway.access.StreamAccess: the row as the stream's caller may see it,
    one of `rows` per read (the last one again once they run out); None: gone or refused."""

    def __init__(self, *rows: Task) -> None:
        self.rows = rows
        self.reads = 0

    async def read(self, task_id: UUID, digest: bytes) -> Task | None:
        self.reads += 1
        return self.rows[min(self.reads, len(self.rows)) - 1] if self.rows else None


class Subscription:
    """Stands in for the dispatcher: whether pub/sub is up, and how often the stream asked
    (once per turn of its loop, so an unchanged count means its task was not woken)."""

    def __init__(self) -> None:
        self.available = True
        self.asked = 0

    def available_for(self, stream: ProgressStream) -> bool:
        self.asked += 1
        return self.available


class ChunkedResponse:
    """Stands in for aiohttp's StreamResponse: each write goes out as one HTTP/1.1 chunk."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.frames: list[bytes] = []

    @property
    def writes(self) -> int:
        return len(self.frames)

    async def write(self, data: bytes) -> None:
        self.frames.append(data)
        self.transport.write(chunk(data))


class Peer:
    """A real loopback TCP connection: our end's transport, and the peer's raw socket."""

    def __init__(self, transport: asyncio.Transport, peer: socket.socket) -> None:
        self.transport = transport
        self.peer = peer

    def received(self) -> bytes:
        chunks = []
        while True:
            try:
                data = self.peer.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            chunks.append(data)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    accepted, _ = listener.accept()
    accepted.setblocking(False)
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield Peer(transport, accepted)  # type: ignore[arg-type]
    transport.close()
    accepted.close()
    listener.close()


def new_stream(
    access: RowReader | None = None,
    stats: StreamStats | None = None,
    task_id: UUID | None = None,
    **settings: Any,
) -> ProgressStream:
    access, stats = access or RowReader(), stats or StreamStats()
    return ProgressStream(task_id or uuid4(), b"digest", access, Settings(**settings), stats)


class Running:
    """A stream whose own task runs `run`, writing to a real socket."""

    def __init__(self, stream: ProgressStream, peer: Peer, direct: bool, first: Update) -> None:
        self.stream = stream
        self.peer = peer
        self.response = ChunkedResponse(peer.transport)
        self.dispatcher = Subscription()
        transport = peer.transport if direct else None
        self.task = asyncio.create_task(
            stream.run(first, self.response, transport, self.dispatcher)
        )

    async def settle(self) -> bytes:
        """Let the loop and the socket catch up; what the peer got meanwhile."""
        await asyncio.sleep(0.05)
        return self.peer.received()

    async def stop(self) -> None:
        self.stream.close()
        await asyncio.wait_for(self.task, 1)


@pytest.fixture(params=[True, False], ids=["direct-write", "response-write"])
def direct(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def start(peer: Peer, direct: bool) -> AsyncIterator[Callable[..., Running]]:
    started: list[Running] = []

    def starting(first: Update, stream: ProgressStream | None = None) -> Running:
        running = Running(stream or new_stream(), peer, direct, first)
        started.append(running)
        return running

    yield starting
    for running in started:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)


# -- the mailbox ------------------------------------------------------------------------------


def test_a_slow_stream_gets_only_the_newest_state_and_the_skips_are_counted() -> None:
    stream = new_stream()  # not running: every update goes through the mailbox
    assert stream.deliver(update(1), NOW) == 0  # queued, nothing skipped
    assert stream.deliver(update(2), NOW) == -1  # replaced 1, never sent
    assert stream.deliver(update(3), NOW) == -1
    assert stream.take() == update(3)
    assert stream.take() is None
    assert not stream.note_checked(NOW, quiet_since=NOW - 1)  # each delivery was activity
    assert stream.note_checked(NOW + 10, quiet_since=NOW)


def test_an_older_or_equal_version_never_replaces_a_newer_one() -> None:
    stream = new_stream()
    stream.deliver(update(5), NOW)
    assert stream.deliver(update(4), NOW) == 0
    assert stream.deliver(update(5), NOW) == 0
    assert stream.take() == update(5)


def test_the_terminal_state_survives_any_burst_before_it() -> None:
    stream = new_stream()
    for version in range(1, 100):
        stream.deliver(update(version), NOW)
    stream.deliver(update(100, terminal=True), NOW)
    stream.deliver(update(99), NOW)  # a late, reordered publish
    taken = stream.take()
    assert taken is not None and taken.terminal and taken.version == 100


async def test_wait_wakes_on_a_delivery_and_times_out_quietly() -> None:
    stream = new_stream()
    assert await stream.wait(0.01) is False
    stream.deliver(update(1), NOW)
    assert await stream.wait(1.0) is True
    stream.wake()
    assert await stream.wait(1.0) is True and stream.take() == update(1)


# -- the idle sweeper's view ------------------------------------------------------------------


async def test_the_sweeper_sees_a_stream_only_while_it_is_live_and_not_closing(
    start: Callable[..., Running],
) -> None:
    stream = new_stream()
    assert stream.overdue_since == math.inf  # not running yet
    running = start(update(1), stream)
    await running.settle()
    opened = time.monotonic()
    assert stream.overdue_since <= opened  # its first send and its open check
    assert not stream.note_checked(opened, quiet_since=opened - 10)  # checked, but busy
    assert stream.note_checked(opened + 20, quiet_since=opened + 10)  # checked, and quiet
    assert stream.overdue_since == opened + 20  # both were noted: due one timeout from now
    running.dispatcher.available = False
    stream.wake()
    await running.settle()
    assert stream.overdue_since == math.inf  # polling: each poll re-checks by itself
    await running.stop()
    assert stream.overdue_since == math.inf


# -- its own task, in both write modes ---------------------------------------------------------


async def test_the_first_state_goes_through_the_response_then_updates_follow_in_order(
    start: Callable[..., Running], direct: bool
) -> None:
    running = start(update(1))
    assert await running.settle() == update(1).chunk  # the headers go out with it
    outcomes = [running.stream.deliver(update(2), NOW), running.stream.deliver(update(3), NOW)]
    received = await running.settle()
    if direct:  # written at once, in the dispatcher's pass: the stream's task was not woken
        assert outcomes == [1, 1]
        assert received == update(2).chunk + update(3).chunk
        assert running.response.writes == 1
    else:  # the mailbox: the task wakes and sends the newest state only
        assert outcomes == [0, -1]
        assert received == update(3).chunk
        assert running.response.writes == 2
    await running.stop()
    assert running.task.done() and await running.settle() == b""


async def test_a_state_already_sent_is_not_sent_again_unless_it_is_an_idle_re_emit(
    start: Callable[..., Running], direct: bool
) -> None:
    stream = new_stream()
    stream.deliver(update(5), NOW)  # published while the stream read its snapshot
    running = start(update(5), stream)  # the snapshot, at the same version
    assert await running.settle() == update(5).chunk  # sent once
    assert stream.deliver(update(5), NOW) == 0  # a late publish of what it has
    assert await running.settle() == b""
    written_at_once = stream.reemit(update(5), NOW)  # the idle re-emit: same version, due anyway
    assert written_at_once is direct
    assert await running.settle() == update(5).chunk
    await running.stop()


async def test_the_terminal_state_is_sent_by_the_streams_task_which_then_ends(
    start: Callable[..., Running],
) -> None:
    running = start(update(1))
    await running.settle()
    asked = running.dispatcher.asked
    assert running.stream.deliver(update(3, terminal=True), NOW) == 0  # it wakes the task
    await asyncio.wait_for(running.task, 1)
    assert running.dispatcher.asked == asked  # no further turn of the loop: it ended
    assert running.response.writes == 2
    assert await running.settle() == update(3, terminal=True).chunk
    assert running.stream.deliver(update(4), NOW) == 0  # ended: nothing is written any more
    assert await running.settle() == b""


async def test_close_ends_a_waiting_stream_at_once(start: Callable[..., Running]) -> None:
    running = start(update(1))
    await running.settle()
    running.stream.close()
    await asyncio.wait_for(running.task, 1)
    assert running.response.writes == 1


async def test_while_redis_is_down_the_stream_polls_its_row_up_to_the_limit(
    start: Callable[..., Running], peer: Peer
) -> None:
    task_id, stats = uuid4(), StreamStats()
    unchanged, changed = task_row(task_id, 1), task_row(task_id, 2)
    access = RowReader(unchanged, changed, changed)
    stream = new_stream(access, stats, task_id, sse_poll_interval_s=0.01, sse_poll_limit=3)
    running = start(update(1), stream)
    await running.settle()
    running.dispatcher.available = False
    stream.wake()  # the dispatcher wakes every stream when Redis goes away
    await asyncio.wait_for(running.task, 1)  # ends after three polls
    assert access.reads == 3
    assert stats.polls == 3 and stats.poll_limit_closes == 1
    assert peer.received().count(b"id: 2\r\n") == 1 and running.response.writes == 2


async def test_back_from_polling_the_stream_reads_its_row_once_more(
    start: Callable[..., Running],
) -> None:
    task_id = uuid4()
    access = RowReader(task_row(task_id, 4, status="completed"))  # it ended while Redis was away
    stream = new_stream(access, task_id=task_id, sse_poll_interval_s=10)
    running = start(update(1), stream)
    await running.settle()
    running.dispatcher.available = False
    stream.wake()
    await running.settle()
    assert access.reads == 0  # waiting out its poll interval
    running.dispatcher.available = True
    stream.wake()  # the dispatcher wakes every stream when Redis is back
    await asyncio.wait_for(running.task, 1)  # the re-read found the end
    assert access.reads == 1 and running.response.writes == 2


async def test_a_row_gone_or_refused_on_a_poll_ends_the_stream(
    start: Callable[..., Running],
) -> None:
    access = RowReader()  # its row is None: deleted, or the caller lost access
    stream = new_stream(access, sse_poll_interval_s=0.01)
    running = start(update(1), stream)
    await running.settle()
    running.dispatcher.available = False
    stream.wake()  # the dispatcher wakes every stream when Redis goes away
    await asyncio.wait_for(running.task, 1)
    assert access.reads == 1 and running.response.writes == 1


# -- the direct path's own guards ---------------------------------------------------------------


async def test_a_socket_that_is_still_sending_gets_the_mailbox_and_coalescing(
    peer: Peer,
) -> None:
    running = Running(new_stream(), peer, True, update(0))
    await running.settle()
    big = Update.of(1, b"x" * (4 << 20), False)  # more than the socket buffers hold
    assert running.stream.deliver(big, NOW) == 1
    assert peer.transport.get_write_buffer_size() > 0  # the peer is not reading
    assert running.stream.deliver(update(2), NOW) == 0  # queued, the task is woken
    assert running.stream.deliver(update(3), NOW) == -1  # 2 is skipped: 3 is a full state
    await asyncio.sleep(0.05)
    assert running.response.frames == [update(0).frame, update(3).frame]  # sent by the task
    await running.stop()
