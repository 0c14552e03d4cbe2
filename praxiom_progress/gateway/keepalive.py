"""Keep-alive comments for every open stream from one task per process: `Pinger`.

aiohttp-sse gives each `EventSourceResponse` a task of its own that sleeps SSE_PING_INTERVAL
and writes `: ping` (about 0.9 KiB a stream: the task, its coroutine, its timer). Here one
task pings them all: the streams are spread over the `PING_SLOTS` slots of a wheel that turns
once per SSE_PING_INTERVAL, each put in a random slot when it opens, and each tick pings one
slot's streams. So streams opened together (a reconnect storm) do not ping together, and none
is quiet for longer than the setting (plus however late a tick runs).

A ping is one `transport.write` of a ready-made chunk, the way `ProgressStream.deliver` writes
updates (so only streams gateway.direct_write allows are kept alive here; `PingedResponse`
gives the others aiohttp-sse's own ping task). A socket that still holds earlier bytes gets
no ping (more bytes would not reach the client sooner) but is watched: when it has taken none
of them for SSE_SEND_TIMEOUT, its connection is aborted, as aiohttp-sse's ping task does when
its write times out; that also ends the stream's own write, blocked on the same socket.
A stream leaves the wheel the moment it ends (`PingedResponse.stop_streaming`).
"""

from __future__ import annotations

import asyncio
import math
import random

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse
from multidict import CIMultiDict, CIMultiDictProxy

from praxiom_progress.gateway.direct_write import DirectWrite

#: How many slots the wheel has: a tick every SSE_PING_INTERVAL / PING_SLOTS (0.12 s at 15 s),
#: pinging about one in PING_SLOTS of the open streams. A ping is a socket write of ~14 us,
#: so at 10,000 streams a tick holds the loop about 1 ms (32 slots: 4.5 to 8 ms, a loop stall
#: over 10 ms whenever another callback ran in the same turn).
PING_SLOTS = 128
_PING = b": ping\r\n\r\n"
#: The comment as one HTTP/1.1 chunk (only chunked, uncompressed streams are pinged here).
PING_CHUNK = b"%x\r\n%s\r\n" % (len(_PING), _PING)
#: What a prepared stream's `headers` read once they are written: nothing, and read-only.
SENT_HEADERS: CIMultiDict[str] = CIMultiDictProxy(CIMultiDict())  # type: ignore[assignment]


class Pinger:
    """The wheel of open streams and the task that turns it (`run`), one per app."""

    def __init__(
        self, interval_s: float, send_timeout_s: float, *, slots: int = PING_SLOTS
    ) -> None:
        self.interval_s = interval_s
        self.send_timeout_s = send_timeout_s
        self._slots: list[set[PingedResponse]] = [set() for _ in range(slots)]
        self._hand = 0  # the slot the next tick pings
        self.pings = 0
        self.aborted = 0  # connections dropped for taking nothing for SSE_SEND_TIMEOUT

    def __len__(self) -> int:
        return sum(map(len, self._slots))

    def __contains__(self, response: object) -> bool:
        return any(response in slot for slot in self._slots)

    def add(self, response: PingedResponse) -> None:
        slot = random.randrange(len(self._slots))
        self._slots[slot].add(response)
        response.ping_slot = slot

    def discard(self, response: PingedResponse) -> None:
        if response.ping_slot >= 0:
            self._slots[response.ping_slot].discard(response)
            response.ping_slot = -1

    async def run(self) -> None:
        """Tick every SSE_PING_INTERVAL / PING_SLOTS, on a schedule that does not drift."""
        loop = asyncio.get_running_loop()
        tick_s = self.interval_s / len(self._slots)
        due = loop.time()
        while True:
            due += tick_s
            await asyncio.sleep(due - loop.time())
            now = loop.time()
            self.tick(now)
            if now - due > self.interval_s:  # the loop was held for a whole turn: start over
                due = now

    def tick(self, now: float) -> None:
        """Ping the streams of the next slot (`now`: loop time, for stalled sockets)."""
        slot = self._slots[self._hand]
        self._hand = (self._hand + 1) % len(self._slots)
        self.pings += len(slot)
        gone = [response for response in slot if not response.ping(now, self.send_timeout_s)]
        for response in gone:
            if response.stalled_since == -math.inf:
                self.aborted += 1
            self.discard(response)


class PingedResponse(EventSourceResponse):
    """An `EventSourceResponse` kept alive by the app's `Pinger` instead of a ping task of its
    own, when its chunks may go straight to its socket (`transport`); else it keeps
    aiohttp-sse's task (SSE_DIRECT_WRITE=0, an HTTP/1.0 peer), at a period of its own a little
    under the setting (`ping_interval`)."""

    # Its own fields in slots: added to the library's instance dict, they would grow it
    # (about 0.5 KiB a stream).
    __slots__ = (
        "_direct",
        "_pinger",
        "ping_slot",
        "stalled_bytes",
        "stalled_since",
        "transport",
    )
    # The headers leave with the first event, in one send instead of two (aiohttp's opt-in,
    # and `web.Response`'s default): every stream writes its first event right after
    # `prepare`, and the pinger writes to a stream only once its headers are out.
    _send_headers_immediately = False

    def __init__(self, pinger: Pinger, direct: DirectWrite, ping_interval: float) -> None:
        super().__init__(ping_interval=ping_interval, send_timeout=pinger.send_timeout_s)
        self._pinger = pinger
        self._direct = direct
        self.transport: asyncio.Transport | None = None  # where chunks may go directly
        self.ping_slot = -1  # its slot in the pinger's wheel; -1: not in it
        self.stalled_since = math.inf  # when its socket was first seen holding `stalled_bytes`
        self.stalled_bytes = 0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """aiohttp-sse's `prepare`, joining the pinger rather than starting a ping task."""
        if self.prepared:
            return await super().prepare(request)
        if request.method != hdrs.METH_GET:  # the library's rule (our routes are GET only)
            raise web.HTTPMethodNotAllowed(request.method, ("GET",))
        self._set_tcp_user_timeout(request)  # a dead peer is dropped by the kernel too
        writer = await web.StreamResponse.prepare(self, request)
        self.enable_chunked_encoding()
        self.transport = self._direct.transport_for(request, self)
        if self.transport is None:
            self._ping_task = asyncio.create_task(self._ping())
        else:
            self._pinger.add(self)
        # The headers are serialized (held by the writer until the first event): an open
        # stream keeps no copy of them (about 1 KiB a stream).
        self._headers = SENT_HEADERS
        return writer

    def ping(self, now: float, send_timeout_s: float) -> bool:
        """Write the comment if the socket is free; False: the stream is gone, or its socket
        took nothing for `send_timeout_s` and was aborted (`stalled_since` = -inf)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        held = transport.get_write_buffer_size()
        if held == 0:
            writer = self._payload_writer
            if writer is not None and writer.output_size:  # the headers went out already
                transport.write(PING_CHUNK)
            self.stalled_since, self.stalled_bytes = math.inf, 0
        elif held != self.stalled_bytes:  # it took some, or more was written: not stalled
            self.stalled_since, self.stalled_bytes = now, held
        elif now - self.stalled_since >= send_timeout_s:
            transport.abort()
            self.stalled_since = -math.inf
            return False
        return True

    def is_connected(self) -> bool:
        if self.ping_slot >= 0:
            return self.transport is not None and not self.transport.is_closing()
        return super().is_connected()

    def stop_streaming(self) -> None:
        """Leave the pinger now (or stop the own ping task); safe to call more than once."""
        self._pinger.discard(self)
        if self._ping_task is not None:
            super().stop_streaming()

    async def wait(self) -> None:
        if self._ping_task is None:
            raise RuntimeError("a stream kept alive by the pinger has no ping task to wait on")
        await super().wait()
