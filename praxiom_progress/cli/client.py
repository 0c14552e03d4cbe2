"""The CLI over HTTP: `spawn`, `status`, `cancel` and `watch` against a running gateway.

`--url` (else `PRAXIOM_URL`, else http://127.0.0.1:8080) and `--token` (else
`PRAXIOM_TOKEN`) on each. Every failure is one `error: ...` line on stderr.

Exit codes: 0 success (`watch`: the task completed); 1 the server refused, could
not be reached, or (`watch`) the task failed; 2 bad arguments or no token;
3 (`watch`) the task was cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from yarl import URL

from praxiom_client import Client, Conflict, OnRetry, PraxiomError, Refused
from praxiom_progress.cli import watch, workspace_watch

COMMANDS: tuple[str, ...] = ("spawn", "status", "cancel", "watch")
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_USER_AGENT = "praxiom-progress-cli"
_MAX_ERROR_LINE = 500


class CommandError(Exception):
    """The command cannot do its work: `error: <message>` on stderr, then `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientDefaults:
    url: str
    token: str | None


def client_defaults(environ: Mapping[str, str] | None = None) -> ClientDefaults:
    """What `--url` and `--token` default to; the only place the environment is read."""
    env = os.environ if environ is None else environ
    return ClientDefaults(
        url=env.get("PRAXIOM_URL", "").strip() or DEFAULT_URL,
        token=env.get("PRAXIOM_TOKEN", "").strip() or None,
    )


@dataclass(frozen=True)
class Target:
    """The gateway to talk to, and as whom."""

    url: str  # without a trailing slash
    token: str


def resolve_target(args: argparse.Namespace, defaults: ClientDefaults) -> Target:
    raw_url = (args.url if args.url is not None else defaults.url).strip()
    try:
        url = URL(raw_url)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query_string:
        raise CommandError(
            f"--url must be an http:// or https:// URL of the gateway, got {raw_url!r}", EXIT_USAGE
        )
    token = args.token.strip() if args.token is not None else defaults.token
    if not token:
        raise CommandError("no API token: pass --token or set PRAXIOM_TOKEN", EXIT_USAGE)
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise CommandError("the token must be printable ASCII without spaces", EXIT_USAGE)
    return Target(str(url.with_fragment(None)).rstrip("/"), token)


# -- arguments --------------------------------------------------------------------------------


def _task_id(value: str) -> str:
    try:
        return str(UUID(value.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a task id (a UUID), got {value!r}") from None


def _keep_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"must be 0 to 86400 seconds, got {value!r}")
    return seconds


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _params(value: str) -> dict[str, Any]:
    try:
        params = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise argparse.ArgumentTypeError(f"must be a JSON object: {exc}") from None
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"step_seconds\": 0.5}}', got {value!r}"
        )
    return params


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the HTTP client's subcommands to the top-level parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the gateway (default: $PRAXIOM_URL, else {DEFAULT_URL})")
    common.add_argument("--token", help="API token (default: $PRAXIOM_TOKEN, which ps cannot see)")

    spawn = commands.add_parser(
        "spawn", parents=[common], help="start a task over HTTP; prints its id"
    )
    spawn.add_argument("--type", dest="task_type", required=True, metavar="TYPE")
    spawn.add_argument(
        "--workspace-id",
        type=_task_id,
        metavar="ID",
        help="needed only if you are a member of several workspaces",
    )
    spawn.add_argument("--params", type=_params, metavar="JSON", help="a JSON object")

    status = commands.add_parser("status", parents=[common], help="print a task's payload")
    status.add_argument("task_id", type=_task_id, metavar="ID", help="the task's id")
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a task")
    cancel.add_argument("task_id", type=_task_id, metavar="ID", help="the task's id")

    follow = commands.add_parser(
        "watch",
        parents=[common],
        help="follow a task's progress until it ends (exit 0 completed, 1 failed, 3 cancelled), "
        "or with --workspace every task of a workspace until Ctrl-C (exit 0)",
    )
    follow.add_argument("task_id", nargs="?", type=_task_id, metavar="ID", help="the task's id")
    follow.add_argument(
        "--workspace",
        type=_task_id,
        metavar="WORKSPACE_ID",
        help="instead of one task: a live table of the workspace's tasks",
    )
    follow.add_argument(
        "--finished-for",
        type=_keep_seconds,
        default=60.0,
        metavar="SECONDS",
        help="with --workspace: how long a finished task stays in the table (default 60)",
    )
    follow.add_argument("--json", action="store_true", help="print each payload as a JSON line")


# -- errors -----------------------------------------------------------------------------------


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for name, value in fields.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            yield f"{prefix}{name}: {' '.join(str(item) for item in value)}"
        else:
            yield f"{prefix}{name}: {value}"


def _error_document(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def http_error_line(status: int, reason: str, body: str) -> str:
    """`<status> <code>: <message>` from the gateway's `{"error": {...}}`, with the fields a
    validation error names; `<status> <reason>` for any other body (a proxy's page)."""
    document = _error_document(body)
    error = document.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(code, str) and isinstance(message, str):
        line = f"{status} {code}: {message}"
        fields = document.get("fields")
        if isinstance(fields, dict) and fields:
            line += f" ({'; '.join(_flatten(fields))})"
    else:
        line = f"{status} {reason}".strip()
    line = watch.one_line(line)
    return line if len(line) <= _MAX_ERROR_LINE else line[: _MAX_ERROR_LINE - 3] + "..."


def _already_finished_line(body: str) -> str:
    """A 409 to cancel: `the task is already <status>`."""
    document = _error_document(body)
    task = document.get("task")
    if isinstance(task, dict) and isinstance(task.get("status"), str):
        return f"the task is already {watch.one_line(task['status'])}"
    error = document.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return watch.one_line(message[:1].lower() + message[1:])
    return "the task has already finished"


def _command_error(exc: PraxiomError) -> CommandError:
    """The one `error:` line for what the client raised."""
    if isinstance(exc, Conflict):
        return CommandError(_already_finished_line(exc.body))
    if isinstance(exc, Refused):
        return CommandError(http_error_line(exc.status, exc.reason, exc.body))
    return CommandError(watch.one_line(str(exc)))


# -- the commands -----------------------------------------------------------------------------


def _client(target: Target, on_retry: OnRetry | None = None) -> Client:
    return Client(target.url, target.token, user_agent=_USER_AGENT, on_retry=on_retry)


def _print_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False), flush=True)


async def _spawn(args: argparse.Namespace, target: Target) -> int:
    async with _client(target) as client:
        task = await client.spawn(
            args.task_type, workspace_id=args.workspace_id, params=args.params
        )
    task_id = task.get("task_id")
    if not isinstance(task_id, str):
        raise CommandError(f"{target.url} answered the spawn without a task_id")
    print(task_id, flush=True)
    return EXIT_OK


async def _status(args: argparse.Namespace, target: Target) -> int:
    async with _client(target) as client:
        _print_json(await client.status(args.task_id))
    return EXIT_OK


async def _cancel(args: argparse.Namespace, target: Target) -> int:
    async with _client(target) as client:
        _print_json(await client.cancel(args.task_id))
    return EXIT_OK


async def _watch(args: argparse.Namespace, target: Target) -> int:
    if (args.task_id is None) == (args.workspace is None):
        raise CommandError("watch needs a task ID or --workspace WORKSPACE_ID, not both", 2)
    if args.workspace is not None:
        await workspace_watch.run(
            target.url,
            target.token,
            args.workspace,
            out=sys.stdout,
            as_json=args.json,
            finished_for_s=args.finished_for,
            user_agent=_USER_AGENT,
        )
        return EXIT_OK  # until Ctrl-C
    renderer = watch.make_renderer(sys.stdout, as_json=args.json, title=f"task {args.task_id[:8]}")
    async with _client(target, on_retry=renderer.reconnecting) as client:
        final = await watch.render(client.watch(args.task_id), renderer)
    status = final["status"]
    if status == "failed":
        error = final.get("error")
        _print_error(error if isinstance(error, str) and error.strip() else "the task failed")
    code = watch.exit_code_for(status)
    return EXIT_FAILED if code is None else code


_RUN: dict[str, Callable[[argparse.Namespace, Target], Coroutine[Any, Any, int]]] = {
    "spawn": _spawn,
    "status": _status,
    "cancel": _cancel,
    "watch": _watch,
}


def _print_error(message: str) -> None:
    print(f"error: {watch.one_line(message)}", file=sys.stderr, flush=True)


def _tolerate_any_encoding() -> None:
    """A task's message may hold characters the terminal's encoding lacks: escape them."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run one of `COMMANDS`; returns the exit code."""
    _tolerate_any_encoding()
    try:
        target = resolve_target(args, client_defaults(environ))
        try:
            return asyncio.run(_RUN[args.command](args, target))
        except PraxiomError as exc:
            raise _command_error(exc) from exc
    except CommandError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `watch ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
