"""The shared pinger (gateway.keepalive) on real loopback sockets, served by aiohttp as
production serves it (AppRunner + TCPSite): one task pings every stream, spread over its
wheel, never before a stream's first bytes; a socket that takes nothing for SSE_SEND_TIMEOUT
is aborted; a stream that ends leaves the wheel at once; a stream the pinger may not write to
keeps aiohttp-sse's own ping task."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

from praxiom_progress.gateway.direct_write import DirectWrite
from praxiom_progress.gateway.keepalive import PING_CHUNK, PingedResponse, Pinger

FIRST = b"data: first\r\n\r\n"
FIRST_CHUNK = b"%x\r\n%s\r\n" % (len(FIRST), FIRST)


@dataclass
class Served:
    """A server whose one route opens a pinged stream, writes FIRST, and holds it open
    (or, with `fill`, writes that many bytes more, for a client that stops reading)."""

    port: int
    pinger: Pinger
    responses: list[PingedResponse]
    ended: list[BaseException | None]


async def _serve(pinger: Pinger, direct: DirectWrite, fill: int = 0) -> AsyncIterator[Served]:
    served = Served(0, pinger, [], [])

    async def stream(request: web.Request) -> web.StreamResponse:
        response = PingedResponse(pinger, direct, pinger.interval_s)
        served.responses.append(response)
        await response.prepare(request)
        try:
            await response.write(FIRST)
            if fill:
                await response.write(b"x" * fill)  # blocks on a client that stopped reading
            await asyncio.Event().wait()
        except BaseException as exc:
            served.ended.append(exc)
            raise
        finally:
            response.stop_streaming()
        return response

    async with _listening(stream) as port:
        served.port = port
        yield served


@asynccontextmanager
async def _listening(
    stream: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[int]:
    """An app serving `stream` at /stream on a loopback port of its own; the port."""
    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listener).start()
    try:
        yield listener.getsockname()[1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for s in _serve(Pinger(0.2, 1.0, slots=4), DirectWrite(True)):
        yield s


async def _open(port: int, rcvbuf: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")  # the headers
    return reader, writer


def _is_own_ping_task(task: asyncio.Task[object]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "") == "EventSourceResponse._ping"


async def _wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_one_task_pings_every_stream_at_the_interval(served: Served) -> None:
    task = asyncio.create_task(served.pinger.run())
    try:
        clients = [await _open(served.port) for _ in range(20)]
        for reader, _ in clients:
            assert await reader.readexactly(len(FIRST_CHUNK)) == FIRST_CHUNK
        started = time.monotonic()
        for reader, _ in clients:  # two pings each, in 2 intervals (and a late tick's slack)
            for _ in range(2):
                assert await reader.readexactly(len(PING_CHUNK)) == PING_CHUNK
        assert time.monotonic() - started < 2 * 0.2 + 0.3
        assert len(served.pinger) == 20
        assert not [t for t in asyncio.all_tasks() if _is_own_ping_task(t)]
    finally:
        task.cancel()
        for _, writer in clients:
            writer.close()


async def test_streams_are_spread_over_the_wheel_and_a_tick_pings_one_slot(
    served: Served,
) -> None:
    clients = [await _open(served.port) for _ in range(200)]
    await _wait_for(lambda: len(served.pinger) == 200)
    slots = [r.ping_slot for r in served.responses]
    assert {slots.count(slot) for slot in range(4)} <= set(range(20, 100))  # 50 each, roughly
    served.pinger.tick(asyncio.get_running_loop().time())
    assert served.pinger.pings == slots.count(0)
    for _, writer in clients:
        writer.close()


async def test_the_headers_leave_with_the_first_event_and_no_ping_comes_before() -> None:
    """A stream's headers wait for its first event and go out with it, in one send; a ping
    written to the socket before them would come before the status line."""
    pinger = Pinger(0.2, 1.0, slots=1)
    prepared = asyncio.Event()
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = PingedResponse(pinger, DirectWrite(True), 0.2)
        await response.prepare(request)
        prepared.set()
        await release.wait()
        await response.write(FIRST)
        await asyncio.Event().wait()
        return response

    async with _listening(stream) as port:
        reader, writer = await asyncio.open_connection(host="127.0.0.1", port=port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await prepared.wait()
        pinger.tick(0.0)  # nothing has gone out yet: no ping
        with pytest.raises(TimeoutError):  # prepared, and not a byte sent
            await asyncio.wait_for(reader.read(1), 0.2)
        release.set()
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readexactly(len(FIRST_CHUNK)) == FIRST_CHUNK
        pinger.tick(0.0)
        assert await reader.readexactly(len(PING_CHUNK)) == PING_CHUNK
        writer.close()


async def test_a_closed_stream_leaves_the_pinger_at_once(served: Served) -> None:
    for _ in range(3):
        clients = [await _open(served.port) for _ in range(50)]
        await _wait_for(lambda: len(served.pinger) == 50)
        for _, writer in clients:
            writer.close()
        ended = len(served.ended) + 50
        await _wait_for(lambda: len(served.ended) == ended)  # noqa: B023
        assert len(served.pinger) == 0  # in the handler's own finally, not at a later tick
    assert all(r.ping_slot == -1 and r not in served.pinger for r in served.responses)


async def test_a_client_that_takes_nothing_for_the_send_timeout_is_dropped() -> None:
    pinger = Pinger(0.1, 0.5, slots=2)
    async for served in _serve(pinger, DirectWrite(True), fill=8 << 20):
        _, writer = await _open(served.port, rcvbuf=4096)  # then never reads again
        started = time.monotonic()
        task = asyncio.create_task(pinger.run())
        try:
            await _wait_for(lambda: served.ended, timeout_s=5.0)  # noqa: B023
        finally:
            task.cancel()
        assert 0.5 <= time.monotonic() - started < 2.0
        # Its write, blocked on the socket, fails (or, as in production, the handler is
        # cancelled when the connection goes).
        assert isinstance(served.ended[0], ConnectionResetError | asyncio.CancelledError)
        assert pinger.aborted == 1 and len(pinger) == 0
        writer.close()


async def test_a_slow_client_that_keeps_reading_is_not_dropped() -> None:
    pinger = Pinger(0.1, 0.5, slots=2)
    async for served in _serve(pinger, DirectWrite(True), fill=64 << 20):
        reader, writer = await _open(served.port)
        task = asyncio.create_task(pinger.run())
        try:
            deadline = time.monotonic() + 1.5  # three send timeouts, never done reading
            while time.monotonic() < deadline:
                await reader.read(1 << 16)
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
        assert served.ended == [] and pinger.aborted == 0
        writer.close()


async def test_a_stream_the_pinger_may_not_write_to_keeps_its_own_ping_task() -> None:
    pinger = Pinger(0.2, 1.0, slots=2)
    async for served in _serve(pinger, DirectWrite(False)):
        reader, writer = await _open(served.port)
        assert await reader.readexactly(len(FIRST_CHUNK)) == FIRST_CHUNK
        assert len(pinger) == 0
        assert await reader.readexactly(len(PING_CHUNK)) == PING_CHUNK  # aiohttp-sse's task
        response = served.responses[0]
        assert response.transport is None and response.is_connected()
        assert [t for t in asyncio.all_tasks() if _is_own_ping_task(t)]
        writer.close()
        await _wait_for(lambda: served.ended)  # noqa: B023
        assert not response.is_connected()


async def test_a_prepared_stream_keeps_no_copy_of_the_headers_it_sent(served: Served) -> None:
    sock = socket.create_connection(("127.0.0.1", served.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Content-Type: text/event-stream" in head and b"X-Accel-Buffering: no" in head
    response = served.responses[0]
    assert len(response.headers) == 0
    with pytest.raises(TypeError):
        response.headers["X-Late"] = "1"  # type: ignore[index]  # read-only: it went out
    writer.close()
