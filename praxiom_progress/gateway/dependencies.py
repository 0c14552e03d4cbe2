"""Says so in the log when PostgreSQL or Redis cannot be reached: at start, then every
`WARN_EVERY_S` while it lasts, and once when it is back. Without it a gateway started with a
dependency down logged nothing, and only its 503s (or its polling streams) told."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from praxiom_progress.gateway.health import probe

log = logging.getLogger("gateway")

#: How often a dependency still down is named again.
WARN_EVERY_S = 30.0

Check = Callable[[], Awaitable[Any]]


class DependencyWatch:
    def __init__(self, checks: dict[str, Check], *, every_s: float = WARN_EVERY_S) -> None:
        self._checks = checks
        self._every_s = every_s
        self.down: set[str] = set()

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._every_s)

    async def check_once(self) -> None:
        names = list(self._checks)
        results = await asyncio.gather(*(probe(self._checks[name]()) for name in names))
        for name, result in zip(names, results, strict=True):
            if result["status"] == "up":
                if name in self.down:
                    self.down.discard(name)
                    log.info("%s is reachable again", name, extra={"action": "dependency_up"})
                continue
            self.down.add(name)
            log.warning(
                "%s is unreachable (%s); retrying, and saying so every %gs while it lasts",
                name,
                result.get("reason", "down"),
                self._every_s,
                extra={"action": "dependency_down", "dependency": name},
            )
