"""Runs the gateway until SIGTERM/SIGINT, the way production and `make run` do."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from aiohttp import web

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.connections import GatewayAppRunner, accept_backlog, connection_cap
from praxiom_progress.taskstate.settings import Settings

log = logging.getLogger("gateway")

#: How long shutdown waits for ordinary requests; streams are ended at once by on_shutdown.
SHUTDOWN_TIMEOUT_S = 10.0
#: After answering a request whose body was not read (a 408, a 413), how long aiohttp keeps
#: reading and dropping the rest before it closes (its default, 10 s, lets a trickler keep
#: the connection that much longer).
LINGERING_S = 2.0


def make_runner(settings: Settings, *, demo: bool = False) -> web.AppRunner:
    # handler_cancellation: a client that goes away cancels its handler, so a stream
    # leaves nothing behind (aiohttp's default would keep it until its next write).
    # keepalive_timeout is also the slow-header guard: aiohttp arms it when a connection opens
    # and after each response, and closes the connection if no whole request has arrived when
    # it fires, however slowly bytes trickle in (a slowloris); an open stream is not affected.
    return GatewayAppRunner(
        create_app(settings, demo=demo),
        max_connections=connection_cap(
            settings.gateway_max_connections, accept_backlog(settings.gateway_backlog)
        ),
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=settings.gateway_header_timeout_s,
        lingering_time=LINGERING_S,
        access_log=None,
    )


async def start(
    settings: Settings, *, demo: bool = False, reuse_port: bool = False
) -> web.AppRunner:
    """Set the app up and listen; `runner.cleanup()` ends every stream and stops.

    `reuse_port`: listen with SO_REUSEPORT, beside the other processes of one supervised
    gateway (gateway.supervisor); the kernel spreads new connections across them."""
    runner = make_runner(settings, demo=demo)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.gateway_host,
            settings.gateway_port,
            backlog=accept_backlog(settings.gateway_backlog),
            reuse_port=reuse_port,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "gateway listening on http://%s:%d",
        settings.gateway_host,
        settings.gateway_port,
        extra={"action": "gateway_started"},
    )
    return runner


async def serve(settings: Settings, *, supervised: bool = False) -> None:
    """Serve until SIGTERM/SIGINT. `supervised`: one of several processes on one port, which
    also stops when its supervisor is gone."""
    runner = await start(settings, reuse_port=supervised)
    # Everything made at start-up lives as long as the process: move it out of the
    # collector's sight, so full collections walk only what streams allocate.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = await _stop_when_supervisor_goes(stop) if supervised else None
    try:
        await stop.wait()
        log.info("stopping: ending open streams", extra={"action": "gateway_stopping"})
    finally:
        # The handlers stay while streams end: a second signal (systemd and the supervisor
        # both send one, a terminal's Ctrl-C reaches every process) must not cut the drain.
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if supervisor is not None:
            supervisor.close()


class _EndOfInput(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def _stop_when_supervisor_goes(stop: asyncio.Event) -> asyncio.BaseTransport:
    """The supervisor holds the other end of this process's stdin: its end of file means the
    supervisor is gone (even killed outright), and a gateway process nobody supervises drains
    and exits rather than keep a share of the port on its own."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: _EndOfInput(stop), sys.stdin.buffer)
    return transport
