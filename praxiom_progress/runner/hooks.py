"""The start-up and shutdown hooks of a runner process (`registry.on_startup` /
`registry.on_shutdown`), run with the state every handler of that process sees."""

from __future__ import annotations

import inspect
import logging
from collections.abc import MutableMapping
from typing import Any

from praxiom_progress.runner.handlers import Hook

log = logging.getLogger("runner")


async def run_hooks(hooks: list[Hook], state: MutableMapping[str, Any], *, stage: str) -> None:
    """Run each hook with the shared state, awaiting those that return an awaitable. A
    start-up hook's error stops the runner; a shutdown hook's is logged and the rest run."""
    for hook in hooks:
        try:
            returned = hook(state)
            if inspect.isawaitable(returned):
                await returned
        except Exception:
            if stage == "startup":
                raise
            log.exception("%s hook %r failed", stage, hook, extra={"action": "hook_error"})
