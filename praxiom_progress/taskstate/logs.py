"""Log output for both processes: one JSON object per line, or readable text.

Production (`praxiom-progress gateway` / `runner`) logs JSON by default, so a
log shipper gets fields instead of prose; `dev` and the admin commands log
text. `LOG_FORMAT` overrides either. A JSON line carries the record's
`extra={...}` fields (`action`, `task_id`, ...) and whatever the current
request put in the log context (`request_id`, `principal`), so every line a
request causes can be found by its id.

The context is a `ContextVar` holding one dict per request: asyncio copies
contexts into tasks, so each request sees only its own, and nothing is shared
between requests or processes.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("praxiom_log_context", default=None)

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add `fields` to every record logged inside the block (and the tasks it starts)."""
    context = {**(_CONTEXT.get() or {}), **fields}
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def enter_context(**fields: Any) -> tuple[dict[str, Any], Token[dict[str, Any] | None]]:
    """`log_context` without the generator and its context manager, for a caller that keeps
    the token itself (gateway.front: an open stream's request holds it for its whole life);
    hand the token to `leave_context`."""
    context = {**(_CONTEXT.get() or {}), **fields}
    return context, _CONTEXT.set(context)


def leave_context(token: Token[dict[str, Any] | None]) -> None:
    _CONTEXT.reset(token)


def annotate(**fields: Any) -> None:
    """Add fields to the current context, if there is one (e.g. the principal, once known)."""
    context = _CONTEXT.get()
    if context is not None:
        context.update(fields)


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get() or {})


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...context, ...extra}`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_CONTEXT.get() or {})
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> None:
    """Everything to stderr, one record per line, in `log_format` (`json` or `text`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
