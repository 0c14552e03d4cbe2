"""The process's own limits: open files raised as far as allowed, and asyncio's complaints
about running out of them logged at most once a second.

Each stream is a socket: at the usual soft limit of 1,024 descriptors, about a thousand
connections (or a thousand attackers' idle ones) use them all, and asyncio then logs every
failed accept. Both processes raise their soft limit to the hard one at start and log both;
the systemd units raise the hard one (`LimitNOFILE`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

log = logging.getLogger("praxiom")

#: The same complaint from the event loop is logged at most this often, with a count.
REPEAT_EVERY_S = 1.0


def raise_open_files_limit() -> tuple[int, int]:
    """Soft limit := hard limit, where the OS allows; (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit: %s", exc)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info(
        "open files: soft limit %d, hard limit %d",
        soft,
        hard,
        extra={"action": "open_files_limit", "soft": soft, "hard": hard},
    )
    return soft, hard


class LoopComplaints:
    """An event-loop exception handler that logs each kind of complaint (its message and
    exception type) at most once per `REPEAT_EVERY_S`, with how many were held back."""

    def __init__(self, every_s: float = REPEAT_EVERY_S) -> None:
        self._every_s = every_s
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = (str(context.get("message", "")), type(exc).__name__ if exc else "")
        now = time.monotonic()
        if now - self._last.get(kind, -self._every_s) < self._every_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        log.error(
            "%s%s%s",
            kind[0] or "event loop error",
            f": {exc}" if exc else "",
            f" (and {held} more like it in the last {self._every_s:g}s)" if held else "",
            extra={"action": "loop_error", "repeats": held},
        )

    def install(self) -> None:
        asyncio.get_running_loop().set_exception_handler(self)
