"""Stopping background tasks for good."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel until done: on Python 3.11, `asyncio.wait_for` (used inside aiopg) can swallow
    a cancellation that races with its result, which would leave a loop running forever."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
