"""The floor baseline: the smallest SSE server our stack allows, to read every figure against.

aiohttp and aiohttp-sse, one shared Redis subscription (a pattern over every task channel,
read by one loop), and each message framed once and written to every stream of its task in
one pass, straight to their sockets (as our gateway's direct writes); aiohttp-sse's keep-alive
pings at a period of their own per stream (0.8 to 1 times its 15 s default, as ours), else
streams opened together ping together and the floor would measure that wave. No auth, no
database, no idle re-read, no limits: what the stack itself costs, and nothing of ours.
Same URL as ours; its streams count as ready when their headers arrive.
Run: python -m bench.floor_gateway --port P --redis-url URL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp_sse import sse_response

PREFIX = "praxiom:task_progress:"
WATCHERS = web.AppKey("watchers", dict[str, set[asyncio.Transport]])


async def progress(request: web.Request) -> web.StreamResponse:
    channel = PREFIX + request.match_info["task_id"]
    watchers = request.app[WATCHERS]
    async with sse_response(request, ping_interval=15.0 * random.uniform(0.8, 1.0)) as response:
        transport = request.transport
        assert transport is not None
        watchers.setdefault(channel, set()).add(transport)
        try:
            await response.wait()  # until the client goes (handler cancellation)
        finally:
            streams = watchers.get(channel)
            if streams is not None:
                streams.discard(transport)
                if not streams:
                    del watchers[channel]
    return response


async def read_loop(app: web.Application, url: str) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe(PREFIX + "*")
    watchers = app[WATCHERS]
    try:
        async for message in pubsub.listen():
            data = message["data"]
            if not isinstance(data, bytes):
                continue
            streams = watchers.get(message["channel"].decode())
            if not streams:
                continue
            event = b"data: " + data + b"\n\n"
            chunk = b"%x\r\n%b\r\n" % (len(event), event)  # HTTP/1.1 chunked framing
            for transport in streams:
                if not transport.is_closing():
                    transport.write(chunk)
    finally:
        await pubsub.aclose()
        await client.aclose()


def make_app(url: str) -> web.Application:
    app = web.Application()
    app[WATCHERS] = {}

    async def subscription(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(read_loop(app, url))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(subscription)
    app.router.add_get("/api/tasks/{task_id}/progress", progress)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.redis_url), host="127.0.0.1", port=args.port, print=None,
        handler_cancellation=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
