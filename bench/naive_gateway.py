"""The naive baseline: the common tutorial SSE endpoint, one Redis subscription per connection.

Same URL, same payloads, no auth, no database: only what a tutorial would write, so the
comparison isolates the cost of the subscription model. Run: python -m bench.naive_gateway
--port P --redis-url URL.
"""

from __future__ import annotations

import argparse

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp_sse import sse_response

REDIS = web.AppKey("redis", aioredis.Redis)


async def progress(request: web.Request) -> web.StreamResponse:
    pubsub = request.app[REDIS].pubsub()
    await pubsub.subscribe(f"praxiom:task_progress:{request.match_info['task_id']}")
    try:
        async with sse_response(request) as response:
            while response.is_connected():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    await response.send(message["data"].decode())
        return response
    finally:
        await pubsub.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    app = web.Application()
    # redis-py 8 caps a pool at 100 connections; a tutorial that works at all must lift it.
    app[REDIS] = aioredis.Redis.from_url(args.redis_url, max_connections=50_000)
    app.router.add_get("/api/tasks/{task_id}/progress", progress)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
