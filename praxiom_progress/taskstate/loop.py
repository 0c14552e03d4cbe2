"""The event loop both processes run on: uvloop (libuv) by default, which does what a gateway
does most, sockets and timers, for less CPU than the standard library's loop (`make bench`
compares them); `EVENT_LOOP=asyncio` picks the standard one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """`asyncio.run` on the chosen loop."""
    if event_loop == "uvloop":
        return uvloop.run(main)
    return asyncio.run(main)
