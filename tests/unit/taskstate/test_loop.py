"""Both processes run on the loop EVENT_LOOP names."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from praxiom_progress.taskstate import loop


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize(("name", "expected"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_run_uses_the_named_loop(name: str, expected: type | None) -> None:
    ran = loop.run(_loop_type(), name)
    if expected is None:
        assert not issubclass(ran, uvloop.Loop)
        assert issubclass(ran, asyncio.AbstractEventLoop)
    else:
        assert issubclass(ran, expected)
