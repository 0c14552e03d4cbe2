"""The CLI over HTTP (spawn, status, cancel, watch): not built yet."""

from __future__ import annotations

import argparse

COMMANDS: tuple[str, ...] = ()


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the HTTP client's subcommands to the top-level parser."""


def run(args: argparse.Namespace) -> int:
    """Run one of `COMMANDS`; returns the exit code."""
    raise NotImplementedError(args.command)
