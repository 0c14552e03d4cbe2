"""A cheap SSE load generator: many raw-socket streams in one process, driven over stdin.

The aiohttp client it replaces took ~75-80 % of a core for 1,000 streams at 20 updates/s,
so it measured itself as much as the gateway. Each stream here is a bare asyncio Protocol:
it writes a minimal HTTP/1.1 GET and scans the bytes it gets for `data: ` (an event) and
`"sent_ns":<digits>` (a benchmark publish), never parsing HTTP chunks or JSON.
Latencies use CLOCK_MONOTONIC (`time.monotonic_ns`), which every process on the machine
shares, against `result_data.sent_ns` stamped by the publisher.

Commands, one JSON object per line on stdin, each answered by one JSON line on stdout:

- `{"cmd": "open", "paths": [...], "at_ns": N|null, "wait_first": bool, "timeout_s": S}`
  opens one stream per path. With `at_ns` every connect starts at once at that instant
  (a reconnect storm); without it at most `OPEN_CONCURRENCY` handshakes are in flight.
  Answers when every stream is ready (its first `data:` event, or with `wait_first` false
  its response headers) or failed: `{"ready": n, "failed": n, "statuses": {...},
  "ready_ns": [...]}`.
- `{"cmd": "reset"}`: forget the publishes counted so far.
- `{"cmd": "collect"}`: `{"received": n, "latencies_ms": [...], "events": n}` since reset.
- `{"cmd": "close"}`: aborts every stream with a RST, so no TIME_WAIT piles up.

Run: `python -m bench.loadgen --port P [--host H] [--token T]`; EOF on stdin ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import struct
import sys
import time
from typing import Any

#: Handshakes in flight per process when not storming: enough to keep a gateway busy,
#: few enough that the listen backlog never overflows.
OPEN_CONCURRENCY = 64

_SENT_NS = re.compile(rb'"sent_ns":(\d+)')
_LINGER_RST = struct.pack("ii", 1, 0)


class Counters:
    """What every stream of this process has received since the last reset."""

    def __init__(self) -> None:
        self.received = 0  # publishes (payloads carrying sent_ns)
        self.events = 0  # every `data:` event, snapshots and idle re-emits included
        self.latencies_ms: list[float] = []

    def reset(self) -> None:
        self.received = 0
        self.events = 0
        self.latencies_ms = []


class Stream(asyncio.Protocol):
    """One SSE connection; `ready` resolves on its first event (or headers), or on failure."""

    def __init__(self, request: bytes, counters: Counters, wait_first: bool) -> None:
        self.request = request
        self.counters = counters
        self.wait_first = wait_first
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.ready_ns = 0
        self.headers_done = False
        self.tail = b""
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if not self.headers_done:
            data = self.tail + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.tail = data
                return
            self.tail = b""
            self.headers_done = True
            try:
                self.status = int(data[9:12])
            except ValueError:
                self.status = -1
            if self.status != 200:
                self._resolve(False, now)
                return
            if not self.wait_first:
                self._resolve(True, now)
            data = data[end + 4 :]
        # Only complete lines are scanned; a partial one waits for the rest.
        cut = data.rfind(b"\n")
        if cut < 0:
            self.tail += data
            return
        lines = self.tail + data[: cut + 1] if self.tail else data[: cut + 1]
        self.tail = data[cut + 1 :]
        events = lines.count(b"data: ")
        if not events:
            return
        counters = self.counters
        counters.events += events
        if not self.ready.done():
            self._resolve(True, now)
        for found in _SENT_NS.finditer(lines):
            counters.received += 1
            counters.latencies_ms.append((now - int(found.group(1))) / 1e6)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._resolve(False, time.monotonic_ns())

    def _resolve(self, ok: bool, now: int) -> None:
        if not self.ready.done():
            self.ready_ns = now if ok else 0
            self.ready.set_result(ok)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class LoadGen:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.head = f"Host: {host}:{port}\r\n{auth}Accept: text/event-stream\r\n\r\n".encode()
        self.counters = Counters()
        self.streams: list[Stream] = []

    async def open(
        self, paths: list[str], at_ns: int | None, wait_first: bool, timeout_s: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(len(paths) if at_ns is not None else OPEN_CONCURRENCY)
        new: list[Stream] = []

        async def one(path: str) -> None:
            stream = Stream(b"GET %s HTTP/1.1\r\n" % path.encode() + self.head,
                            self.counters, wait_first)  # fmt: skip
            new.append(stream)
            async with limit:
                try:
                    await loop.create_connection(lambda: stream, self.host, self.port)
                except OSError:
                    stream._resolve(False, 0)
                await stream.ready

        if at_ns is not None:
            await asyncio.sleep(max(0.0, (at_ns - time.monotonic_ns()) / 1e9))
        jobs = [asyncio.create_task(one(path)) for path in paths]
        await asyncio.wait(jobs, timeout=timeout_s)
        for job in jobs:
            job.cancel()
        self.streams.extend(new)
        statuses: dict[str, int] = {}
        for stream in new:
            statuses[str(stream.status)] = statuses.get(str(stream.status), 0) + 1
        ready = [s.ready_ns for s in new if s.ready_ns]
        return {
            "ready": len(ready),
            "failed": len(new) - len(ready),
            "statuses": statuses,
            "ready_ns": ready,
        }

    def collect(self) -> dict[str, Any]:
        c = self.counters
        return {
            "received": c.received,
            "events": c.events,
            "latencies_ms": [round(x, 3) for x in c.latencies_ms],
        }

    def close(self) -> dict[str, Any]:
        closed = len(self.streams)
        for stream in self.streams:
            stream.abort()
        self.streams = []
        return {"closed": closed}


async def serve(gen: LoadGen) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        cmd = command["cmd"]
        answer: dict[str, Any]
        if cmd == "open":
            answer = await gen.open(
                command["paths"],
                command.get("at_ns"),
                command.get("wait_first", True),
                command.get("timeout_s", 60.0),
            )
        elif cmd == "reset":
            gen.counters.reset()
            answer = {"reset": True}
        elif cmd == "collect":
            answer = gen.collect()
        elif cmd == "close":
            answer = gen.close()
            await asyncio.sleep(0.1)  # let the aborts go out
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    gen.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    asyncio.run(serve(LoadGen(args.host, args.port, args.token)))


if __name__ == "__main__":
    main()
