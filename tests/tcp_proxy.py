"""A loopback TCP proxy that a test can cut and restore, to take PostgreSQL "down" for one
client without touching the shared server."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from psycopg2.extensions import make_dsn, parse_dsn


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a TCP address, or to a Unix socket when `target_port` is
    None and `target_host` is the socket's path."""

    def __init__(self, target_host: str, target_port: int | None) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset every open one, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            host, port = self.target
            if port is None:
                up_reader, up_writer = await asyncio.open_unix_connection(host)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


class GatedProxy(TcpProxy):
    """A proxy to Redis whose client-to-server direction a test can hold and release: bytes
    sent while it is held reach Redis only on release."""

    def __init__(self, target_host: str, target_port: int | None) -> None:
        super().__init__(target_host, target_port)
        self.open = asyncio.Event()
        self.open.set()
        self.held_bytes = 0  # bytes waiting at the gate

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        if port is None:  # a Unix socket (the suite's embedded Redis)
            up_reader, up_writer = await asyncio.open_unix_connection(host)
        else:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._gated(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _gated(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.held_bytes += len(data)
                await self.open.wait()
                self.held_bytes -= len(data)
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


def redis_target(redis_url: str) -> tuple[str, int | None]:
    """What a proxy forwards to for the Redis that `redis_url` names: a TCP address, or the
    Unix socket of the suite's embedded Redis (REDIS_URL unset)."""
    url = urlsplit(redis_url)
    if url.scheme == "unix":
        return url.path, None
    return url.hostname or "127.0.0.1", url.port or 6379


def redis_gate(redis_url: str) -> GatedProxy:
    return GatedProxy(*redis_target(redis_url))


def postgres_proxy(database_url: str) -> TcpProxy:
    """A proxy in front of the PostgreSQL that `database_url` names (TCP or Unix socket)."""
    params = parse_dsn(database_url)
    host, port = params.get("host", "127.0.0.1"), int(params.get("port", 5432))
    if host.startswith("/"):
        return TcpProxy(f"{host}/.s.PGSQL.{port}", None)
    return TcpProxy(host, port)


def through(proxy: TcpProxy, database_url: str) -> str:
    """`database_url`, rerouted through `proxy`."""
    return make_dsn(database_url, host="127.0.0.1", port=str(proxy.port))
