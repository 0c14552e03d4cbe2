"""The gateway's own aiohttp server: connections handled by `QuietRequestHandler`
(gateway.malformed), and at most GATEWAY_MAX_CONNECTIONS of them at once.

Past the cap a new connection takes the place of the oldest one that has not sent a whole
request yet (an idle or trickling socket: what a flood of unauthenticated connections is made
of); when every connection is busy, the new one is closed instead. So the process never runs
out of descriptors (the cap stays below the open-files limit), a flood cannot lock out a
real client (a probe's `/healthz`, say), and there is nothing to retry in a loop.

aiohttp has no public hook for either, so `GatewayAppRunner` swaps the class of the server
it makes: the other place here that leans on aiohttp's internals (tests/security).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

from aiohttp import web, web_protocol, web_server

from praxiom_progress.gateway.malformed import QuietRequestHandler

log = logging.getLogger("gateway")

#: Descriptors kept for everything but client connections (pools, Redis, files, the listener).
RESERVED_DESCRIPTORS = 64
#: Shedding is logged at most this often, with a count.
LOG_EVERY_S = 1.0


def _open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def accept_backlog(configured: int) -> int:
    """GATEWAY_BACKLOG, at most an eighth of the open-files limit: asyncio accepts up to the
    backlog's worth of pending connections in one go, each a descriptor, before any is handed
    on, and one descriptor too many makes it log and stop accepting for a second."""
    return max(16, min(configured, _open_files_limit() // 8))


def connection_cap(configured: int, backlog: int) -> int:
    """GATEWAY_MAX_CONNECTIONS, or (0) what the open-files limit leaves once the process's
    own descriptors are counted, and twice an accept batch (`backlog`): the batch itself, and
    as many connections shed to make room for it, whose sockets close a loop turn later."""
    if configured:
        return configured
    return max(16, _open_files_limit() - 2 * backlog - RESERVED_DESCRIPTORS)


class _CappedServer(web_server.Server):
    max_connections: int
    shed: int  # connections closed to stay under the cap
    _logged_at: float
    _unlogged: int

    def __call__(self) -> web_protocol.RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(
        self, handler: web_protocol.RequestHandler, transport: asyncio.Transport
    ) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.max_connections:
            self._shed_one(newest=handler)

    def _shed_one(self, newest: web_protocol.RequestHandler) -> None:
        """Close the oldest connection that never finished a request, else `newest`."""
        victim = next(
            (
                (h, t)
                for h, t in self._connections.items()
                if h is not newest and h._request_count == 0 and not t.is_closing()
            ),
            (newest, self._connections[newest]),
        )
        victim[1].close()
        self.shed += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning(
                "at GATEWAY_MAX_CONNECTIONS (%d): %d connection(s) closed to make room",
                self.max_connections,
                self._unlogged,
                extra={"action": "connections_shed", "count": self._unlogged},
            )
            self._logged_at, self._unlogged = now, 0


class GatewayAppRunner(web.AppRunner):
    """An AppRunner whose server handles connections with `QuietRequestHandler` and keeps at
    most `max_connections` of them."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self._max_connections = max_connections

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _CappedServer  # same object and state, two methods different
        assert isinstance(server, _CappedServer)
        server.max_connections = self._max_connections
        server.shed, server._logged_at, server._unlogged = 0, -LOG_EVERY_S, 0
        return server
