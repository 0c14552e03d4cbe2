"""What an open stream keeps on its task's stack: memory per stream counts at ten thousand
streams, and every coroutine frame under a stream lives as long as the stream does.

The frames are read off the live request's task, walking `cr_await` from aiohttp's request
handler down to the future the stream sleeps on.
"""

from __future__ import annotations

import asyncio
import logging
from types import CoroutineType
from typing import Any

import aiohttp
import pytest

from praxiom_progress.gateway.keys import STREAMS
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer, spawn, wait_for
from tests.sse_client import events, stream_timeout


def _frames(task: asyncio.Task[Any]) -> list[str]:
    """`module.function` of each coroutine awaiting the next, outermost first."""
    found = []
    coro: Any = task.get_coro()
    while isinstance(coro, CoroutineType):
        code = coro.cr_code
        found.append(f"{coro.cr_frame.f_globals.get('__name__')}.{code.co_name}")
        coro = coro.cr_await
    return found


async def test_an_open_stream_keeps_its_handler_and_its_run_and_no_middleware_frame(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The front door's steps (request id, limits, the access line) are the stream handler's
    own: no frame of gateway.front waits under a stream, and its access line is still written
    when it ends (tests/integration/test_logs.py checks the lines' fields)."""
    caplog.set_level(logging.INFO)
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    url = f"{live_gateway.url}/api/tasks/{task_id}/progress"
    async with (
        aiohttp.ClientSession(timeout=stream_timeout(10)) as session,
        session.get(url, headers={**bearer(member.token), "X-Request-ID": "frames-1"}) as r,
    ):
        assert r.status == 200 and r.headers["X-Request-ID"] == "frames-1"
        await anext(events(r))
        await wait_for(lambda: asyncio.sleep(0, result=bool(live_gateway.app[STREAMS])))
        stacks = [_frames(t) for t in asyncio.all_tasks()]
        [stack] = [s for s in stacks if "praxiom_progress.gateway.sse.progress" in s]
        ours = [frame for frame in stack if frame.startswith("praxiom_progress.")]
        assert ours == [
            "praxiom_progress.gateway.sse.progress",
            "praxiom_progress.gateway.stream.run",
        ], stack
    await wait_for(lambda: asyncio.sleep(0, result=not live_gateway.app[STREAMS]))
    lines = [rec for rec in caplog.records if getattr(rec, "action", "") == "request"]
    [line] = [rec for rec in lines if getattr(rec, "task_id", "") == str(task_id)]
    assert line.status == 200, line  # type: ignore[attr-defined]
