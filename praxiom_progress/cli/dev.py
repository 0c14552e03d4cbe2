"""`praxiom-progress dev`: the whole system in one process, for local work and `make run`.

Servers not named by DATABASE_URL / REDIS_URL are embedded under `.run/`
(see `cli.embedded`); the schema is applied, a demo token is issued, and the
runner and the gateway (with the demo page) run until Ctrl-C, which stops
everything this command started. Every type the runner loads (RUNNER_TASK_MODULES) is
catalogued before the gateway starts, so the gateway accepts it at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from praxiom_progress.cli.embedded import default_run_dir, embedded_postgres, embedded_redis
from praxiom_progress.gateway import server as gateway_server
from praxiom_progress.runner.daemon import connected_runner
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database, migrate
from praxiom_progress.taskstate.settings import Settings

DEMO_WORKSPACE = "demo"
DEMO_USER = "demo"
_TOKEN_LIFETIME_S = 30 * 86400


async def run_dev(settings: Settings, explicit: tuple[bool, bool]) -> int:
    run_dir = default_run_dir()
    with ExitStack() as servers:
        database_from = redis_from = "DATABASE_URL / REDIS_URL"
        if not explicit[0]:
            url = servers.enter_context(embedded_postgres(run_dir / "postgres"))
            settings = settings.replace(database_url=url)
            database_from = f"embedded, data in {_shown(run_dir / 'postgres')}"
        if not explicit[1]:
            url = servers.enter_context(embedded_redis(run_dir / "redis"))
            settings = settings.replace(redis_url=url)
            redis_from = f"embedded, socket in {_shown(run_dir / 'redis')}"
        await migrate(settings)
        token = await _demo_token(settings)
        await _serve(settings, _banner(settings, token, database_from, redis_from))
    return 0


async def _demo_token(settings: Settings) -> str:
    db = await Database.connect(settings, maxsize=1, name="praxiom-dev")
    try:
        issued = await AccountStore(db).create_token(
            workspace=DEMO_WORKSPACE, user=DEMO_USER, expires_in_s=_TOKEN_LIFETIME_S
        )
    finally:
        await db.close()
    return issued.token


async def _serve(settings: Settings, banner: str) -> None:
    """Runner and gateway side by side, `banner` printed once both run; the first Ctrl-C
    stops both gracefully, a second skips the runner's grace."""
    async with connected_runner(settings) as runner:
        # Its types catalogued before the banner: the gateway accepts each of them at once.
        await runner.publish_catalogue()
        gateway = await gateway_server.start(settings, demo=True)
        running = asyncio.create_task(runner.run(), name="dev-runner")
        print(banner, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                runner.stop(force=True)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([stopped, running], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            print("stopping...", file=sys.stderr)
            await gateway.cleanup()
            runner.stop()
            await running
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _banner(settings: Settings, token: str, database_from: str, redis_from: str) -> str:
    host = settings.gateway_host if settings.gateway_host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{settings.gateway_port}"
    cli = (
        _shown(Path(sys.argv[0]))
        if sys.argv[0].endswith("praxiom-progress")
        else "praxiom-progress"
    )
    return f"""
praxiom-progress is running (dev mode: runner + gateway in one process)
  demo page:   {url}/demo
  PostgreSQL:  {database_from}
  Redis:       {redis_from}

token: {token}

Spawn a task and watch it from another terminal:
  export PRAXIOM_URL={url} PRAXIOM_TOKEN={token}
  {cli} watch $({cli} spawn --type validation_kit --params '{{"step_seconds": 1}}')

Ctrl-C stops everything.
"""


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
