"""Credentials out of anything shown: settings' repr, error messages, logs.

A URL is shown without its password even when malformed (a typo in the scheme, say), where
urlsplit finds no credentials; a key=value connection string without its `password=`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["hide_password"]

#: A key=value connection string's password (libpq's form of DATABASE_URL), quoted or not.
_DSN_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def hide_password(url: str) -> str:
    """`url` as it may be shown: the password (or, malformed, all credentials) as `***`."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    if parts.netloc or "@" not in url:
        return _DSN_PASSWORD.sub(r"\1***", url)
    head, _, tail = url.rpartition("@")
    scheme, sep, _ = head.partition("://")
    return f"{scheme}://***@{tail}" if sep else f"***@{tail}"
