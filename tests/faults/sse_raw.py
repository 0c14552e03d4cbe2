"""A cheap SSE client on a bare asyncio Protocol, for hundreds of streams in the test process.

aiohttp's client costs too much CPU per stream at these sizes. This one speaks just
enough HTTP/1.1: the status line, the headers, and a chunked body whose end (the zero
chunk) tells a clean close from a reset. Each event is parsed (`id:` and the JSON of
`data:`) because the suite checks every version a client was sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_LINGER_RST = struct.pack("ii", 1, 0)


class Received:
    """One event: when it arrived, its id, and its data (parsed when first asked for: 100k
    JSON parses would cost more CPU than the gateway under test)."""

    __slots__ = ("_payload", "at", "data", "version")

    def __init__(self, at: float, version: int, data: bytes) -> None:
        self.at = at  # time.monotonic() when it arrived
        self.version = version
        self.data = data
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            self._payload = json.loads(self.data)
        return self._payload


class SseConnection(asyncio.Protocol):
    """One HTTP request for a stream; `done` resolves when the connection ends, however."""

    def __init__(self, request: bytes, *, rcvbuf: int | None = None) -> None:
        self.request = request
        self.rcvbuf = rcvbuf
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.events: list[Received] = []
        self.clean_end = False  # the server ended the body properly (zero chunk)
        self.lost: Exception | None = None  # why the connection ended, when not cleanly
        self.buffer = b""
        self._headers_done = False
        self._chunk_left = -1  # -1: expecting a chunk-size line
        self._body = b""
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.on_event: list[Any] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._headers_done:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.status = int(head.split(b" ", 2)[1])
            self._headers_done = True
            self.buffer = rest
            if self.status != 200:
                self._resolve(self.first)
                self.abort()
                return
        self._read_chunks()

    def _read_chunks(self) -> None:
        while True:
            if self._chunk_left < 0:
                line, sep, rest = self.buffer.partition(b"\r\n")
                if not sep:
                    return
                self._chunk_left = int(line.split(b";")[0], 16)
                self.buffer = rest
                if self._chunk_left == 0:
                    self.clean_end = True
                    self.abort()
                    return
            if len(self.buffer) < self._chunk_left + 2:
                return
            self._body += self.buffer[: self._chunk_left]
            self.buffer = self.buffer[self._chunk_left + 2 :]
            self._chunk_left = -1
            self._parse_events()

    def _parse_events(self) -> None:
        while True:
            block, sep, rest = self._body.partition(b"\r\n\r\n")
            if not sep:
                return
            self._body = rest
            version, data = None, []
            for line in block.split(b"\r\n"):
                if line.startswith(b"id: "):
                    version = int(line[4:])
                elif line.startswith(b"data: "):
                    data.append(line[6:])
            if version is None or not data:
                continue  # a ping comment
            received = Received(time.monotonic(), version, b"\n".join(data))
            self.events.append(received)
            self._resolve(self.first)
            for callback in self.on_event:
                callback(received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self._resolve(self.first)
        self._resolve(self.done)

    @staticmethod
    def _resolve(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def reset(self) -> None:
        """Go away as a crashed client does: a RST, no FIN, nothing left in TIME_WAIT."""
        if self.transport is not None and not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            self.transport.abort()

    def pause(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()


def stream_request(task_id: str, token: str, last_event_id: int | None = None) -> bytes:
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    return (
        f"GET /api/tasks/{task_id}/progress HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n{extra}\r\n"
    ).encode()


async def open_stream(
    port: int, task_id: str, token: str, *, last_event_id: int | None = None,
    rcvbuf: int | None = None,
) -> SseConnection:  # fmt: skip
    """Connect and send the request (the answer arrives later: await `.first`)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:  # before connect, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # A small segment size too (a slow mobile path): on loopback (MSS 64 kB) the server
        # would otherwise autotune its send buffer to ~4 MB for this socket.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    connection = SseConnection(stream_request(task_id, token, last_event_id), rcvbuf=rcvbuf)
    await loop.create_connection(lambda: connection, sock=sock)
    return connection


@dataclass
class Follower:
    """A client that follows one task to its end across reconnects, as a browser does:
    on a dropped connection it comes back (to the next gateway in `ports`, as a load
    balancer would send it) with `Last-Event-ID`, after a short jittered wait."""

    task_id: str
    token: str
    ports: list[int]
    retry_s: float = 0.3
    events: list[Received] = field(default_factory=list)
    connections: int = 0
    clean_ends: int = 0  # connections the server ended properly, without a terminal event
    refusals: dict[int, int] = field(default_factory=dict)  # non-200 answers by status
    history: list[str] = field(default_factory=list)  # how each connection ended
    on_port: int | None = None  # the gateway of the open connection, if any
    _port_index: int = 0

    @property
    def last(self) -> Received | None:
        return self.events[-1] if self.events else None

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.payload["status"] in TERMINAL

    async def follow(self, deadline_s: float = 60.0) -> None:
        """Until a terminal event (or a 204 after one); raises TimeoutError past `deadline_s`."""
        async with asyncio.timeout(deadline_s):
            while not self.finished:
                port = self.ports[self._port_index % len(self.ports)]
                last_id = self.last.version if self.last else None
                try:
                    connection = await open_stream(port, self.task_id, self.token,
                                                   last_event_id=last_id)  # fmt: skip
                except OSError:
                    self._port_index += 1
                    await asyncio.sleep(self.retry_s * random.uniform(0.5, 1.5))
                    continue
                self.connections += 1
                connection.on_event.append(self.events.append)
                self.on_port = port
                await connection.done
                self.on_port = None
                self.history.append(
                    f"port {port}: {connection.status}, {len(connection.events)} events, "
                    f"{'clean end' if connection.clean_end else repr(connection.lost)}"
                )
                if connection.status not in (0, 200):
                    self.refusals[connection.status] = self.refusals.get(connection.status, 0) + 1
                    if connection.status == 204:
                        return
                if self.finished:
                    return
                if connection.clean_end:
                    self.clean_ends += 1
                else:
                    self._port_index += 1  # reset: this gateway is gone, try the next
                await asyncio.sleep(self.retry_s * random.uniform(0.5, 1.5))

    def versions(self) -> list[int]:
        return [event.version for event in self.events]
