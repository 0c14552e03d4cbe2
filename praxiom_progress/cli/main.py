"""`praxiom-progress`: one console script for every process and admin task.

Exit codes: 0 success; 1 the command could not do its work (PostgreSQL
unreachable, schema missing, no such token or membership); 2 bad arguments
or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn

from praxiom_progress import __version__
from praxiom_progress.cli import client, tokens
from praxiom_progress.cli.arguments import CommandFailed, UsageError, name
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database, migrate
from praxiom_progress.taskstate.errors import SchemaMissing, StoreUnavailable
from praxiom_progress.taskstate.logs import configure_logging
from praxiom_progress.taskstate.resources import LoopComplaints, raise_open_files_limit
from praxiom_progress.taskstate.settings import Settings, SettingsError, explicit_servers

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="praxiom-progress", description="Live progress for background tasks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser(
        "migrate",
        help="create DATABASE_URL's database if missing and apply schema.sql (safe to repeat)",
    )
    commands.add_parser("runner", help="run the runner daemon until SIGTERM/SIGINT")
    gateway = commands.add_parser(
        "gateway",
        help="serve the SSE gateway until SIGTERM/SIGINT (GATEWAY_PROCESSES of them on one port)",
    )
    # One process of a supervised group (gateway.supervisor starts them so): SO_REUSEPORT.
    gateway.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)

    tokens.add_commands(commands)

    commands.add_parser(
        "dev",
        help="runner and gateway in one process, with the demo page; embedded PostgreSQL and "
        "Redis when DATABASE_URL / REDIS_URL are not set",
    )
    client.add_commands(commands)

    member = commands.add_parser("member", help="manage workspace membership")
    member_commands = member.add_subparsers(dest="member_command", required=True)
    remove = member_commands.add_parser("remove", help="remove a user from a workspace")
    remove.add_argument("--workspace", required=True, type=name)
    remove.add_argument("--user", required=True, type=name)
    return parser


async def _with_database(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    db = await Database.connect(settings, maxsize=2, name="praxiom-cli")
    try:
        return await work(db)
    finally:
        await db.close()


async def _migrate(settings: Settings) -> int:
    created = await migrate(settings)
    if created:
        print(f"database {created} created")
    print("schema applied")
    return EXIT_OK


def _member_remove(args: argparse.Namespace) -> Callable[[Database], Awaitable[int]]:
    async def work(db: Database) -> int:
        if not await AccountStore(db).remove_member(workspace=args.workspace, user=args.user):
            raise CommandFailed(f"{args.user!r} is not a member of workspace {args.workspace!r}")
        print(f"removed {args.user} from {args.workspace}")
        return EXIT_OK

    return work


async def _run_runner(settings: Settings) -> int:
    from praxiom_progress.runner.daemon import serve
    from praxiom_progress.runner.handlers import TaskModuleError
    from praxiom_progress.runner.http import PortUnavailable

    raise_open_files_limit()
    LoopComplaints().install()
    try:
        await serve(settings)
    except TaskModuleError as exc:
        raise UsageError(str(exc)) from exc
    except PortUnavailable as exc:
        raise CommandFailed(str(exc)) from exc
    return EXIT_OK


async def _run_gateway(settings: Settings, *, supervised: bool) -> int:
    from praxiom_progress.gateway.server import serve

    raise_open_files_limit()
    LoopComplaints().install()
    try:
        if settings.gateway_processes > 1 and not supervised:
            await _supervise_gateways(settings)
        else:
            await serve(settings, supervised=supervised)
    except OSError as exc:  # the port is taken, or the host is not ours
        raise CommandFailed(
            f"cannot listen on {settings.gateway_host}:{settings.gateway_port}: {exc.strerror}"
        ) from exc
    return EXIT_OK


async def _supervise_gateways(settings: Settings) -> None:
    """GATEWAY_PROCESSES gateway processes on the port this one holds (gateway.supervisor)."""
    from praxiom_progress.gateway.supervisor import Supervisor, hold_port

    held, port = hold_port(settings.gateway_host, settings.gateway_port)
    try:
        env = dict(os.environ, GATEWAY_PROCESSES="1", GATEWAY_PORT=str(port))
        command = [sys.executable, "-m", "praxiom_progress.cli.main", "gateway", "--supervised"]
        address = f"http://{settings.gateway_host}:{port}"
        await Supervisor(command, env, settings.gateway_processes, settings, address=address).run()
    finally:
        for sock in held:
            sock.close()


def _dispatch(args: argparse.Namespace, settings: Settings) -> Coroutine[Any, Any, int]:
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "runner":
        return _run_runner(settings)
    if args.command == "gateway":
        return _run_gateway(settings, supervised=args.supervised)
    if args.command == "dev":
        from praxiom_progress.cli.dev import run_dev

        return run_dev(settings, explicit_servers())
    if args.command == "token":
        return _with_database(settings, tokens.work_for(args))
    return _with_database(settings, _member_remove(args))


#: Commands that run as services log JSON lines unless LOG_FORMAT says otherwise.
_JSON_LOGGING_COMMANDS = frozenset({"gateway", "runner"})


def log_format_for(command: str, settings: Settings) -> str:
    if settings.log_format is not None:
        return settings.log_format
    return "json" if command in _JSON_LOGGING_COMMANDS else "text"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command in client.COMMANDS:
            return client.run(args)  # over HTTP: no database, settings of its own
        settings = Settings.from_env()
        configure_logging(settings.log_level, log_format_for(args.command, settings))
        return asyncio.run(_dispatch(args, settings))
    except (UsageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CommandFailed, SchemaMissing, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
