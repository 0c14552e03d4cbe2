"""How many tasks the claim loop may claim now.

A slot is a handler running: RUNNER_CONCURRENCY handlers at most run at once. A task whose
handler has returned holds no slot while its end is written (the end's statement and the next
claim's then overlap instead of taking turns, which doubles what short tasks get through),
but it is still held: heartbeats keep beating for it and the shutdown waits for it. At most
RUNNER_CONCURRENCY such ends are waited on besides, so a slow PostgreSQL cannot make them
pile up. Its row stays `running` until its end commits, so a claim's workspace counts see it
and WORKSPACE_MAX_RUNNING is never overshot (a claim may only be more cautious).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Held(Protocol):
    @property
    def finishing(self) -> bool: ...


def free_slots(held: Iterable[Held], concurrency: int) -> int:
    """How many tasks may be claimed: handlers not running, within the bound on ends."""
    held = list(held)
    handlers = sum(1 for task in held if not task.finishing)
    return max(0, min(concurrency - handlers, 2 * concurrency - len(held)))
