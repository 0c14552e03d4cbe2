"""What the admin commands share: their two failures and the argument types they parse."""

from __future__ import annotations

import argparse
import re

_MAX_NAME_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UsageError(Exception):
    """Bad arguments: reported on one line, exit 2."""


class CommandFailed(Exception):
    """The command could not do its work: reported on one line, exit 1."""


def name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_NAME_LENGTH or _CONTROL.search(value):
        raise argparse.ArgumentTypeError(
            f"must be 1 to {_MAX_NAME_LENGTH} printable characters, got {value!r}"
        )
    return value


def seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not 0 < seconds < 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and ten years, got {value!r}")
    return seconds
