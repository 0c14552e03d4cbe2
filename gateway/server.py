"""Runs the gateway until SIGTERM/SIGINT, the way production and `make run` do."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.app import create_app
from taskstate.settings import Settings

log = logging.getLogger("gateway")

#: How long shutdown waits for ordinary requests; streams are ended at once by on_shutdown.
SHUTDOWN_TIMEOUT_S = 10.0


def make_runner(settings: Settings) -> web.AppRunner:
    # handler_cancellation: a client that goes away cancels its handler, so a stream
    # leaves nothing behind (aiohttp's default would keep it until its next write).
    return web.AppRunner(
        create_app(settings),
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
    )


async def serve(settings: Settings) -> None:
    runner = make_runner(settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    log.info(
        "gateway listening on http://%s:%d",
        settings.gateway_host,
        settings.gateway_port,
        extra={"action": "gateway_started"},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping: ending open streams", extra={"action": "gateway_stopping"})
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
