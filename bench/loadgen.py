"""A load generator: N SSE clients in one process, reporting what they received.

Run several of these side by side so the client side is never the bottleneck. It prints
one JSON line when every stream is connected (`ready`), then one with the results:
publish-to-receive latencies (from `result_data.sent_ns`, CLOCK_MONOTONIC, shared by every
process on the machine), messages per stream, and its own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time

import aiohttp

_SENT_NS = re.compile(rb'"sent_ns":(\d+)')


class Client:
    def __init__(self) -> None:
        self.connected = asyncio.Event()  # response headers in: the stream is subscribed
        self.received = 0
        self.latencies_ms: list[float] = []


async def stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], client: Client
) -> None:
    async with session.get(url, headers=headers) as response:
        response.raise_for_status()
        client.connected.set()
        async for raw in response.content:
            if not raw.startswith(b"data: "):
                continue
            now = time.monotonic_ns()
            # A byte search, not json.loads: the client must stay cheaper than the server.
            found = _SENT_NS.search(raw)
            if found is not None:
                client.received += 1
                client.latencies_ms.append((now - int(found.group(1))) / 1e6)


async def run(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    clients = [Client() for _ in range(args.connections)]
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(stream(session, args.url, headers, c)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
        ready_s = time.monotonic() - started
        print(json.dumps({"ready": len(clients), "connected_s": ready_s}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "latencies_ms": [round(x, 3) for c in clients for x in c.latencies_ms],
                "received": [c.received for c in clients],
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "wall_s": time.monotonic() - started,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--connections", type=int, required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
