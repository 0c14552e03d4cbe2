"""`praxiom-progress token ...`: issue, list and revoke API tokens (never printing a secret
except the new one, once, on `create`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from praxiom_progress.cli.arguments import CommandFailed, UsageError, name, seconds
from praxiom_progress.taskstate.accounts import AccountStore, NoSuchWorkspace, TokenListing
from praxiom_progress.taskstate.db import Database

EXIT_OK = 0
Work = Callable[[Database], Awaitable[int]]


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `token create`, `token list` and `token revoke` to the top-level parser."""
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
        type=name,
        default=[],
        help="workspace name (a user's: exactly one; a service's: repeat to grant several)",
    )
    principal = create.add_mutually_exclusive_group(required=True)
    principal.add_argument("--user", type=name, help="user name: the token acts as this user")
    principal.add_argument(
        "--service", type=name, help="service name: the token acts only in granted workspaces"
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
    create.add_argument("--expires-in", type=seconds, metavar="SECONDS", help="lifetime")
    create.add_argument("--json", action="store_true", help="print a JSON object")
    listing = token_commands.add_parser(
        "list", help="every token without its secret: id, prefix, principal, workspaces, times"
    )
    listing.add_argument("--workspace", type=name, help="only the tokens that may act in it")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    revoke = token_commands.add_parser(
        "revoke",
        help="revoke a token: by its secret, by --id (from `token list`), or every token of "
        "--user U, a member of --workspace W",
    )
    revoke.add_argument("token", nargs="?", help="the token itself")
    revoke.add_argument("--id", dest="token_id", type=_token_id, help="the token's id")
    revoke.add_argument("--user", type=name, help="with --workspace: all the user's tokens")
    revoke.add_argument("--workspace", type=name)


def _token_id(value: str) -> UUID:
    try:
        return UUID(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a token id (a UUID, from `token list`), got {value!r}"
        ) from None


def work_for(args: argparse.Namespace) -> Work:
    """What `token <command>` does with the database."""
    if args.token_command == "create":
        return _token_create(args)
    if args.token_command == "list":
        return _token_list(args)
    return _token_revoke(args)


def _check_token_create(args: argparse.Namespace) -> None:
    """The option combinations argparse cannot express: one line, exit 2."""
    if args.user is not None:
        if args.all_workspaces or args.read_only:
            raise UsageError("--all-workspaces and --read-only are for --service tokens only")
        if len(args.workspace) != 1:
            raise UsageError("a user's token needs exactly one --workspace")
    elif args.all_workspaces == bool(args.workspace):
        raise UsageError("a --service token needs --workspace (one or more) or --all-workspaces")


def _token_create(args: argparse.Namespace) -> Work:
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


def _service_token_create(args: argparse.Namespace) -> Work:
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


def _token_revoke(args: argparse.Namespace) -> Work:
    by_member = args.user is not None or args.workspace is not None
    if (args.token is not None) + (args.token_id is not None) + by_member != 1:
        raise UsageError("token revoke takes one of: TOKEN, --id ID, --user U --workspace W")
    if by_member and (args.user is None or args.workspace is None):
        raise UsageError("token revoke --user needs --workspace too (and the other way round)")

    async def work(db: Database) -> int:
        store = AccountStore(db)
        if args.token_id is not None:
            if not await store.revoke_token_by_id(args.token_id):
                raise CommandFailed(f"no token with id {args.token_id}")
            print(f"token {args.token_id} revoked")
        elif by_member:
            count = await store.revoke_member_tokens(user=args.user, workspace=args.workspace)
            if count is None:
                raise CommandFailed(
                    f"{args.user!r} is not a member of workspace {args.workspace!r}"
                )
            print(f"revoked {count} token{'' if count == 1 else 's'} of {args.user}")
        else:
            if not await store.revoke_token(args.token):
                raise CommandFailed("no such token")
            print("token revoked")
        return EXIT_OK

    return work


def _token_list(args: argparse.Namespace) -> Work:
    async def work(db: Database) -> int:
        try:
            found = await AccountStore(db).list_tokens(args.workspace)
        except NoSuchWorkspace as exc:
            raise CommandFailed(f"no workspace named {args.workspace!r}") from exc
        if args.json:
            print(json.dumps([_listing_json(token) for token in found], ensure_ascii=False))
        else:
            print(render_table(found))
        return EXIT_OK

    return work


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _listing_json(token: TokenListing) -> dict[str, Any]:
    return {
        "id": str(token.id),
        "prefix": token.prefix,
        "user": token.user,
        "service": token.service,
        "workspaces": list(token.workspaces),
        "all_workspaces": token.all_workspaces,
        "read_only": token.read_only,
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


_COLUMNS = ("ID", "PREFIX", "PRINCIPAL", "WORKSPACES", "CREATED", "EXPIRES", "LAST USED", "REVOKED")


def _row(token: TokenListing) -> tuple[str, ...]:
    if token.user is not None:
        principal = f"user {token.user}"
    else:
        principal = f"service {token.service}" + (" (read-only)" if token.read_only else "")
    workspaces = "(all)" if token.all_workspaces else ",".join(token.workspaces) or "-"
    return (
        str(token.id),
        f"{token.prefix}..." if token.prefix else "-",
        principal,
        workspaces,
        _time(token.created_at),
        _time(token.expires_at),
        _time(token.last_used_at),
        _time(token.revoked_at),
    )


def render_table(tokens: list[TokenListing]) -> str:
    """Aligned columns (times in UTC, to the minute), a header first; names are printed
    with control characters escaped, so a name cannot forge a line."""
    rows = [_COLUMNS, *(tuple(_printable(cell) for cell in _row(t)) for t in tokens)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _printable(cell: str) -> str:
    return cell if cell.isprintable() else cell.encode("unicode_escape").decode("ascii")
