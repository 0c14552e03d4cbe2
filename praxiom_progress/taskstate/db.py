"""The one module that talks to aiopg and psycopg2.

aiopg is frozen upstream (see the pitfalls note), so it stays behind this
edge: callers get dict rows and `taskstate.errors`, never driver types.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiopg
import psycopg2
import psycopg2.errors
import psycopg2.sql
from psycopg2.extensions import make_dsn, parse_dsn
from psycopg2.extras import Json

from praxiom_progress.taskstate.errors import InvalidData, NotFound, SchemaMissing, StoreUnavailable
from praxiom_progress.taskstate.settings import Settings

Row = dict[str, Any]
#: Told each statement's duration in seconds, success or not (metrics hook; must not block).
QueryObserver = Callable[[float], None]

#: psycopg2 adapts a plain dict as hstore; jsonb columns need this wrapper.
jsonb = Json

#: Each LISTEN connection also listens here, for the NOTIFY that proves it hears anything.
PROBE_CHANNEL = "praxiom_listen_probe"

# Every session in UTC, so timestamps never carry the server's zone.
_SESSION_OPTIONS = "-c timezone=UTC"


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn driver and pool errors into `taskstate.errors` types."""
    try:
        yield
    except psycopg2.errors.UndefinedTable as exc:
        raise SchemaMissing(
            "the database has no praxiom-progress schema; run `praxiom-progress migrate`"
        ) from exc
    except psycopg2.errors.ForeignKeyViolation as exc:
        raise NotFound(f"a row it refers to does not exist: {_first_line(exc)}") from exc
    except psycopg2.DataError as exc:
        raise InvalidData(f"PostgreSQL refused a value: {_first_line(exc)}") from exc
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {_first_line(exc)}") from exc
    except (TimeoutError, OSError) as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc


async def _connect(dsn: str, settings: Settings, name: str = "praxiom") -> Any:
    """One dedicated connection, configured like the pool's."""
    async with translate_errors():
        return await aiopg.connect(
            dsn,
            timeout=settings.database_timeout_s,
            application_name=name,
            enable_hstore=False,
            options=_SESSION_OPTIONS,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """A pool of autocommit connections; one statement per call. `listen` opens a dedicated
    connection configured like the pool's (a pooled one cannot be held for LISTEN).

    `on_query`, when given, is told how long each call took (pool wait included), so
    the processes can export query latency without the stores knowing about metrics."""

    def __init__(
        self, pool: aiopg.Pool, settings: Settings, on_query: QueryObserver | None = None
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._on_query = on_query

    @classmethod
    async def connect(
        cls,
        settings: Settings,
        *,
        minsize: int = 1,
        maxsize: int = 10,
        name: str = "praxiom",
        on_query: QueryObserver | None = None,
        url: str | None = None,
    ) -> Database:
        """A pool on `url` (default: DATABASE_URL); LISTEN always goes to DATABASE_URL."""
        async with translate_errors():
            pool = await aiopg.create_pool(
                url or settings.database_url,
                minsize=minsize,
                maxsize=maxsize,
                timeout=settings.database_timeout_s,
                application_name=name,
                enable_hstore=False,
                options=_SESSION_OPTIONS,
            )
        return cls(pool, settings, on_query)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self._on_query is None:
            return await self._fetch_all(sql, params)
        started = time.perf_counter()
        try:
            return await self._fetch_all(sql, params)
        finally:
            self._on_query(time.perf_counter() - started)

    async def _fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        async with translate_errors(), self._pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                if cur.description is None:
                    return []
                # Plain tuples zipped with the names: RealDictCursor builds each row in Python,
                # a call per column, several times the cost of this on every read.
                names = [column.name for column in cur.description]
                return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def execute_script(self, sql: str) -> None:
        """Run several statements in one round trip (no parameters)."""
        async with translate_errors(), self._pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(sql)

    @asynccontextmanager
    async def listen(self, channels: Sequence[str], *, name: str) -> AsyncIterator[Notifications]:
        """LISTEN on `channels` until exit, on a connection of its own (DATABASE_LISTEN_URL, else
        DATABASE_URL). `ListenUnheard` when a NOTIFY sent through this pool does not arrive."""
        async with listen(self._settings, [*channels, PROBE_CHANNEL], name=name) as queue:
            notifications = Notifications(queue)
            await self._probe(notifications)
            yield notifications

    async def _probe(self, notifications: Notifications) -> None:
        """Behind PgBouncer in transaction pooling, LISTEN is accepted on a server connection
        the pooler hands to others: nothing arrives. A NOTIFY of our own tells."""
        nonce = uuid.uuid4().hex
        await self.fetch_all("SELECT pg_notify(%(channel)s, %(nonce)s)", {
            "channel": PROBE_CHANNEL, "nonce": nonce})  # fmt: skip
        timeout_s = self._settings.database_listen_probe_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await notifications.heard_probe(nonce)
        except TimeoutError:
            raise ListenUnheard(
                f"LISTEN heard nothing within {timeout_s:g} s (PgBouncer in transaction pooling "
                "mode?): set DATABASE_LISTEN_URL to a direct connection to PostgreSQL"
            ) from None


@dataclass(frozen=True, slots=True)
class Notification:
    channel: str
    payload: str


class ListenUnheard(StoreUnavailable):
    """LISTEN was accepted but hears nothing: the caller polls instead, and says so."""


class Notifications:
    """A LISTEN connection's notifications, with driver errors translated at this edge (the
    connection's probe notifications left out)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._early: deque[Notification] = deque()  # received while the probe was awaited

    async def get(self) -> Notification:
        """The next notification; `StoreUnavailable` once the server has gone away."""
        if self._early:
            return self._early.popleft()
        while True:
            async with translate_errors():
                note = await self._queue.get()
            if note.channel != PROBE_CHANNEL:
                return Notification(note.channel, note.payload)

    def received(self) -> list[Notification]:
        """The notifications already received, without waiting (one reaction may answer
        several of them)."""
        notes = list(self._early)
        self._early.clear()
        while not self._queue.empty():
            note = self._queue.get_nowait()
            if note.channel != PROBE_CHANNEL:
                notes.append(Notification(note.channel, note.payload))
        return notes

    async def heard_probe(self, nonce: str) -> None:
        """Wait for the probe `nonce`, keeping whatever else arrives first."""
        while True:
            async with translate_errors():
                note = await self._queue.get()
            if note.channel == PROBE_CHANNEL:
                if note.payload == nonce:
                    return
            else:
                self._early.append(Notification(note.channel, note.payload))


@asynccontextmanager
async def listen(settings: Settings, channels: list[str], *, name: str) -> AsyncIterator[Any]:
    """A dedicated connection LISTENing on `channels`; yields its notification queue.

    `await queue.get()` returns `Notify(pid, channel, payload)` and raises
    `StoreUnavailable` (through `translate_errors` at the caller) when the server goes away.
    """
    conn = await _connect(settings.database_listen_url or settings.database_url, settings, name)
    try:
        async with translate_errors(), conn.cursor() as cur:
            for channel in channels:
                await cur.execute(
                    psycopg2.sql.SQL("LISTEN {}").format(psycopg2.sql.Identifier(channel))
                )
        yield conn.notifies
    finally:
        conn.close()


def schema_text() -> str:
    """The installed copy of `schema.sql`, or the repository's in a source checkout."""
    installed = files("praxiom_progress.taskstate").joinpath("schema.sql")
    if installed.is_file():
        return installed.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "schema.sql").read_text(encoding="utf-8")


async def create_database_if_missing(settings: Settings) -> str | None:
    """Create DATABASE_URL's database when the server lacks it, so a first `migrate` just works.

    Returns the name of the database it created, or None. The maintenance
    database `postgres` is used only when the target really is missing.
    """
    try:
        conn = await _connect(settings.database_url, settings)
    except StoreUnavailable as exc:
        if not _is_missing_database(exc.__cause__):
            raise
    else:
        conn.close()
        return None
    name = parse_dsn(settings.database_url).get("dbname")
    if not name:
        return None
    maintenance = await _connect(make_dsn(settings.database_url, dbname="postgres"), settings)
    try:
        async with translate_errors(), maintenance.cursor() as cur:
            await cur.execute(
                psycopg2.sql.SQL("CREATE DATABASE {}").format(psycopg2.sql.Identifier(name))
            )
    except psycopg2.errors.DuplicateDatabase:
        return None  # another migrate created it meanwhile
    finally:
        maintenance.close()
    return name


def _is_missing_database(exc: BaseException | None) -> bool:
    return isinstance(exc, psycopg2.OperationalError) and "does not exist" in str(exc)


async def apply_schema(db: Database) -> None:
    """Apply `schema.sql` under an advisory lock, so concurrent migrations do not race."""
    await db.execute_script(
        "SELECT pg_advisory_xact_lock(hashtext('praxiom-progress schema'));\n" + schema_text()
    )


async def migrate(settings: Settings) -> str | None:
    """Create the database if missing and apply the schema; the created database's name."""
    created = await create_database_if_missing(settings)
    db = await Database.connect(settings, maxsize=1, name="praxiom-migrate")
    try:
        await apply_schema(db)
    finally:
        await db.close()
    return created
