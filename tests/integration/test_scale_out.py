"""Two gateways and two runner processes against one PostgreSQL and one Redis: every stream,
whichever gateway serves it, sees every task through to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from praxiom_progress.gateway.keys import STREAM_STATS
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, RunnerProcess, bearer, spawn
from tests.sse_client import events, stream_timeout


async def test_two_gateways_and_two_runners_share_the_work_and_every_stream_ends(
    settings: Settings,
    member: IssuedToken,
    task_store: TaskStore,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    gateways = [LiveGateway(settings), LiveGateway(settings)]
    for gateway in gateways:
        await gateway.start()
    try:
        runner_processes(RUNNER_CONCURRENCY="10")
        runner_processes(RUNNER_CONCURRENCY="10")
        task_ids = [
            await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0.2)
            for _ in range(20)
        ]

        async def watch(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
            async with session.get(url, headers=bearer(member.token)) as response:
                assert response.status == 200
                return [event.payload async for event in events(response)]

        async with aiohttp.ClientSession(timeout=stream_timeout(30)) as session:
            streams = [
                watch(session, f"{gateway.url}/api/tasks/{task_id}/progress")
                for task_id in task_ids
                for gateway in gateways  # each task watched through both gateways
            ]
            results = await asyncio.wait_for(asyncio.gather(*streams), 60)

        runners_seen: set[str] = set()
        for task_id, received in zip([t for t in task_ids for _ in gateways], results, strict=True):
            versions = [p["version"] for p in received]
            assert versions == sorted(set(versions)), "versions must strictly increase"
            assert received[-1]["status"] == "completed"
            row = await task_store.get_task(task_id)
            assert row is not None and received[-1]["version"] == row.version
            runners_seen.add(row.runner_id)
        assert len(runners_seen) == 2, "both runners should have taken part"
        for gateway in gateways:
            assert gateway.app[STREAM_STATS].open == 0
    finally:
        for gateway in gateways:
            await gateway.stop()
