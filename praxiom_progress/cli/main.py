"""`praxiom-progress`: one console script for every process and admin task.

Exit codes: 0 success; 1 the command could not do its work (PostgreSQL
unreachable, schema missing, no such token or membership); 2 bad arguments
or settings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn

from praxiom_progress import __version__
from praxiom_progress.cli import client
from praxiom_progress.taskstate import loop
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database, migrate
from praxiom_progress.taskstate.errors import SchemaMissing, StoreUnavailable
from praxiom_progress.taskstate.logs import configure_logging
from praxiom_progress.taskstate.resources import LoopComplaints, raise_open_files_limit
from praxiom_progress.taskstate.settings import Settings, SettingsError, explicit_servers

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_MAX_NAME_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UsageError(Exception):
    """Bad arguments: reported on one line, exit 2."""


class CommandFailed(Exception):
    """The command could not do its work: reported on one line, exit 1."""


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_NAME_LENGTH or _CONTROL.search(value):
        raise argparse.ArgumentTypeError(
            f"must be 1 to {_MAX_NAME_LENGTH} printable characters, got {value!r}"
        )
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not 0 < seconds < 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and ten years, got {value!r}")
    return seconds


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
    commands.add_parser("gateway", help="serve the SSE gateway until SIGTERM/SIGINT")

    token = commands.add_parser("token", help="issue and revoke API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create",
        help="issue a user's token (creating the workspace, user and membership if missing) or, "
        "with --service, an internal service's",
    )
    create.add_argument(
        "--workspace",
        action="append",
        type=_name,
        default=[],
        help="workspace name (a user's: exactly one; a service's: repeat to grant several)",
    )
    principal = create.add_mutually_exclusive_group(required=True)
    principal.add_argument("--user", type=_name, help="user name: the token acts as this user")
    principal.add_argument(
        "--service", type=_name, help="service name: the token acts only in granted workspaces"
    )
    create.add_argument(
        "--all-workspaces",
        action="store_true",
        help="service tokens only: grant every workspace, present and future",
    )
    create.add_argument(
        "--read-only",
        action="store_true",
        help="service tokens only: status, record and progress; never spawn or cancel",
    )
    create.add_argument("--expires-in", type=_seconds, metavar="SECONDS", help="lifetime")
    create.add_argument("--json", action="store_true", help="print a JSON object")
    revoke = token_commands.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")

    commands.add_parser(
        "dev",
        help="runner and gateway in one process, with the demo page; embedded PostgreSQL and "
        "Redis when DATABASE_URL / REDIS_URL are not set",
    )
    client.add_commands(commands)

    member = commands.add_parser("member", help="manage workspace membership")
    member_commands = member.add_subparsers(dest="member_command", required=True)
    remove = member_commands.add_parser("remove", help="remove a user from a workspace")
    remove.add_argument("--workspace", required=True, type=_name)
    remove.add_argument("--user", required=True, type=_name)
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


def _check_token_create(args: argparse.Namespace) -> None:
    """The option combinations argparse cannot express: one line, exit 2."""
    if args.user is not None:
        if args.all_workspaces or args.read_only:
            raise UsageError("--all-workspaces and --read-only are for --service tokens only")
        if len(args.workspace) != 1:
            raise UsageError("a user's token needs exactly one --workspace")
    elif args.all_workspaces == bool(args.workspace):
        raise UsageError("a --service token needs --workspace (one or more) or --all-workspaces")


def _token_create(args: argparse.Namespace) -> Callable[[Database], Awaitable[int]]:
    _check_token_create(args)
    if args.service is not None:
        return _service_token_create(args)

    async def work(db: Database) -> int:
        (workspace,) = args.workspace
        issued = await AccountStore(db).create_token(
            workspace=workspace, user=args.user, expires_in_s=args.expires_in
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "token": issued.token,
                        "user_id": str(issued.user_id),
                        "workspace_id": str(issued.workspace_id),
                        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
                    }
                )
            )
        else:
            print(f"workspace {workspace} ({issued.workspace_id}), user {args.user}")
            print(issued.token)
        return EXIT_OK

    return work


def _service_token_create(args: argparse.Namespace) -> Callable[[Database], Awaitable[int]]:
    async def work(db: Database) -> int:
        issued = await AccountStore(db).create_service_token(
            service=args.service,
            workspaces=args.workspace,
            all_workspaces=args.all_workspaces,
            read_only=args.read_only,
            expires_in_s=args.expires_in,
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "token": issued.token,
                        "service": issued.service,
                        "workspace_ids": sorted(str(w) for w in issued.workspace_ids),
                        "all_workspaces": issued.all_workspaces,
                        "read_only": issued.read_only,
                        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
                    }
                )
            )
        else:
            scope = "all workspaces" if issued.all_workspaces else ", ".join(args.workspace)
            mode = "read-only" if issued.read_only else "read-write"
            print(f"service {issued.service}: {scope}, {mode}")
            print(issued.token)
        return EXIT_OK

    return work


def _token_revoke(args: argparse.Namespace) -> Callable[[Database], Awaitable[int]]:
    async def work(db: Database) -> int:
        if not await AccountStore(db).revoke_token(args.token):
            raise CommandFailed("no such token")
        print("token revoked")
        return EXIT_OK

    return work


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


async def _run_gateway(settings: Settings) -> int:
    from praxiom_progress.gateway.server import serve

    raise_open_files_limit()
    LoopComplaints().install()
    try:
        await serve(settings)
    except OSError as exc:  # the port is taken, or the host is not ours
        raise CommandFailed(
            f"cannot listen on {settings.gateway_host}:{settings.gateway_port}: {exc.strerror}"
        ) from exc
    return EXIT_OK


def _dispatch(args: argparse.Namespace, settings: Settings) -> Coroutine[Any, Any, int]:
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "runner":
        return _run_runner(settings)
    if args.command == "gateway":
        return _run_gateway(settings)
    if args.command == "dev":
        from praxiom_progress.cli.dev import run_dev

        return run_dev(settings, explicit_servers())
    if args.command == "token":
        work = _token_create(args) if args.token_command == "create" else _token_revoke(args)
        return _with_database(settings, work)
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
        return loop.run(_dispatch(args, settings), settings.event_loop)
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
