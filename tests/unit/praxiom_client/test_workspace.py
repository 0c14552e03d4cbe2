"""`Client.watch_workspace` and `Client.list_tasks` against a stub gateway: every task's newest
state once, a reconnection resuming from the last event id (an id line alone included), a
refusal on reconnection raised, a repeat dropped; the list's query string."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web

from praxiom_client import Client, Forbidden, RetryPolicy, TaskNotFound, TaskPayload
from tests.unit.praxiom_client.test_client import Sleeps, Stub, constant, stub  # noqa: F401

WORKSPACE = "5e1a0000-0000-4000-8000-000000000001"
PATH = f"/api/workspaces/{WORKSPACE}/progress"


def state(task: int, version: int, status: str = "running") -> dict[str, Any]:
    return {"id": f"task-{task}", "status": status, "version": version, "progress_pct": version}


def stream(*lines: str) -> Any:
    """A handler answering one event stream of these lines, then ending it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write("".join(f"{line}\n" for line in lines).encode())
        return response

    return handler


def event(payload: dict[str, Any], mark: int) -> str:
    return f"id: {mark}\ndata: {json.dumps(payload)}\n"


async def test_every_change_once_resuming_after_a_drop_until_access_is_lost(
    stub: tuple[Stub, str],  # noqa: F811 (the fixture imported above)
) -> None:
    fake, url = stub
    fake.answer(
        PATH,
        stream(event(state(1, 1), 10), event(state(2, 4), 10), event(state(1, 2), 11), "id: 12\n"),
        # The reconnection's catch-up repeats a state it has, then brings what it missed.
        stream(event(state(1, 2), 12), event(state(2, 5, "completed"), 13)),
        constant(
            lambda: web.json_response({"error": {"code": "FORBIDDEN", "message": "No"}}, status=403)
        ),
    )
    sleeps = Sleeps()
    seen: list[TaskPayload] = []
    async with Client(url, "pxp_t", sleep=sleeps, policy=RetryPolicy(first_delay_s=0.01)) as c:
        with pytest.raises(Forbidden):
            async with aclosing(c.watch_workspace(WORKSPACE)) as payloads:
                async for payload in payloads:
                    seen.append(payload)
    assert [(p["id"], p["version"]) for p in seen] == [
        ("task-1", 1),
        ("task-2", 4),
        ("task-1", 2),
        ("task-2", 5),
    ]
    resumed = [headers.get("Last-Event-ID") for _, _, headers, _ in fake.seen]
    assert resumed == [None, "12", "13"]  # the id line alone moved the resume point
    assert len(sleeps.delays) == 2


async def test_an_unknown_workspace_is_refused_at_once(
    stub: tuple[Stub, str],  # noqa: F811 (the fixture imported above)
) -> None:
    fake, url = stub
    body = {"error": {"code": "NOT_FOUND", "message": "No such workspace"}}
    fake.answer(PATH, constant(lambda: web.json_response(body, status=404)))
    async with Client(url, "pxp_t") as client:
        with pytest.raises(TaskNotFound) as refused:
            async for _ in client.watch_workspace(WORKSPACE):
                pass
    assert refused.value.message == "No such workspace"


async def test_list_tasks_sends_only_the_filters_given(
    stub: tuple[Stub, str],  # noqa: F811 (the fixture imported above)
) -> None:
    fake, url = stub
    page = {"tasks": [], "next_cursor": "1.00"}
    queries: list[dict[str, str]] = []

    async def listing(request: web.Request) -> web.StreamResponse:
        queries.append(dict(request.query))
        return web.json_response(page)

    fake.answer("/api/tasks", listing, listing)
    async with Client(url, "pxp_t") as client:
        assert await client.list_tasks() == page
        await client.list_tasks(
            workspace_id=WORKSPACE,
            status=("pending", "running"),
            task_type="kit",
            limit=5,
            cursor="c",
        )
    assert queries == [
        {},
        {
            "workspace_id": WORKSPACE,
            "status": "pending,running",
            "task_type": "kit",
            "limit": "5",
            "cursor": "c",
        },
    ]
