"""`GET /api/tasks`: pages, filters, visibility and refusals, against real PostgreSQL; and the
plans `EXPLAIN` gives its queries (one index scan, no sort, no OFFSET)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import pytest

from praxiom_progress.gateway.listing import QUERIES, Position
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer, spawn
from tests.security.kit import expire


async def _list(api: Any, token: str, **query: Any) -> dict[str, Any]:
    response = await api.get("/api/tasks", params=query, headers=bearer(token))
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return dict(await response.json())


async def _every_page(api: Any, token: str, **query: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await _list(api, token, **query, **({"cursor": cursor} if cursor else {}))
        pages.append([task["id"] for task in page["tasks"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ends"


async def _newest_first(db: Database, ids: Iterable[UUID | str]) -> list[str]:
    rows = await db.fetch_all(
        "SELECT id FROM background_tasks WHERE id = ANY(%(ids)s::uuid[])"
        " ORDER BY created_at DESC, id DESC",
        {"ids": [str(i) for i in ids]},
    )
    return [str(row["id"]) for row in rows]


async def _set_status(db: Database, task_id: UUID, status: str) -> None:
    ended = status in ("completed", "failed", "cancelled")
    await db.fetch_all(
        "UPDATE background_tasks SET status = %(status)s,"
        " completed_at = CASE WHEN %(ended)s THEN now() END,"
        " error = CASE WHEN %(status)s = 'failed' THEN 'boom' END,"
        " runner_id = 'r', claim_token = gen_random_uuid(), started_at = now(), timeout_s = 5"
        " WHERE id = %(id)s",
        {"id": task_id, "status": status, "ended": ended},
    )


async def test_pages_walk_every_task_newest_first_with_a_stable_cursor(
    api: Any, member: IssuedToken, task_store: TaskStore, db: Database
) -> None:
    ids = [await spawn(task_store, member.workspace_id, "research") for _ in range(8)]
    # Three spawned in the same microsecond: the id breaks the tie, and no page loses one.
    await db.fetch_all(
        "UPDATE background_tasks SET created_at = '2026-01-01T00:00:00Z' WHERE id = ANY(%(ids)s)",
        {"ids": ids[2:5]},
    )
    expected = await _newest_first(db, ids)

    pages = await _every_page(api, member.token, limit=3)
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [task_id for page in pages for task_id in page] == expected

    # The same position always gives the same cursor; a task spawned after the first page
    # is newer than all of it, so it shifts nothing on the pages after.
    first = await _list(api, member.token, limit=3)
    assert (await _list(api, member.token, limit=3))["next_cursor"] == first["next_cursor"]
    newcomer = await spawn(task_store, member.workspace_id, "research")
    second = await _list(api, member.token, limit=3, cursor=first["next_cursor"])
    assert [task["id"] for task in second["tasks"]] == pages[1]
    assert (await _list(api, member.token, limit=1))["tasks"][0]["id"] == str(newcomer)

    # The default page is 50, and a page of exactly the rest ends the list.
    default = await _list(api, member.token)
    assert len(default["tasks"]) == 9 and default["next_cursor"] is None
    exact = await _list(api, member.token, limit=9)
    assert exact["next_cursor"] is None


async def test_each_task_is_its_canonical_record(
    api: Any, member: IssuedToken, task_store: TaskStore
) -> None:
    task_id = await spawn(task_store, member.workspace_id, "synthesis", step_seconds=1)
    (listed,) = (await _list(api, member.token))["tasks"]
    record = await api.get(f"/api/tasks/{task_id}", headers=bearer(member.token))
    assert listed == await record.json()
    assert listed["params"] == {"step_seconds": 1}


async def test_filters_by_workspace_status_and_type_alone_and_together(
    api: Any, member: IssuedToken, task_store: TaskStore, db: Database
) -> None:
    acme = member.workspace_id
    other = await AccountStore(db).create_token(workspace="initech", user="ann")
    initech = other.workspace_id
    tasks = {
        "acme-pending-research": await spawn(task_store, acme, "research"),
        "acme-running-research": await spawn(task_store, acme, "research"),
        "acme-running-synthesis": await spawn(task_store, acme, "synthesis"),
        "acme-failed-research": await spawn(task_store, acme, "research"),
        "initech-running-research": await spawn(task_store, initech, "research"),
        "initech-completed-synthesis": await spawn(task_store, initech, "synthesis"),
    }
    for name, task_id in tasks.items():
        status = name.split("-")[1]
        if status != "pending":
            await _set_status(db, task_id, status)

    async def names(**query: Any) -> set[str]:
        pages = await _every_page(api, member.token, limit=2, **query)
        listed = {task_id for page in pages for task_id in page}
        return {name for name, task_id in tasks.items() if str(task_id) in listed}

    assert await names() == set(tasks)  # ann is in both workspaces
    assert await names(workspace_id=str(initech)) == {
        "initech-running-research",
        "initech-completed-synthesis",
    }
    assert await names(status="running") == {
        "acme-running-research",
        "acme-running-synthesis",
        "initech-running-research",
    }
    assert await names(status="pending,running", task_type="research") == {
        "acme-pending-research",
        "acme-running-research",
        "initech-running-research",
    }
    assert await names(workspace_id=str(acme), status="failed,completed") == {
        "acme-failed-research"
    }
    assert await names(task_type="synthesis", status="cancelled") == set()
    assert await names(task_type="no_such_type") == set()


async def test_only_workspaces_the_caller_may_see(
    api: Any, member: IssuedToken, task_store: TaskStore, db: Database
) -> None:
    accounts = AccountStore(db)
    mine = await spawn(task_store, member.workspace_id, "research")
    stranger = await accounts.create_token(workspace="globex", user="bob")
    theirs = await spawn(task_store, stranger.workspace_id, "research")
    lonely = await accounts.create_token(workspace="empty", user="carl")

    async def ids(token: str, **query: Any) -> list[str]:
        return [task["id"] for task in (await _list(api, token, **query))["tasks"]]

    assert await ids(member.token) == [str(mine)]
    assert await ids(stranger.token) == [str(theirs)]
    assert await ids(lonely.token) == []

    granted = await accounts.create_service_token(service="reports", workspaces=["globex"])
    assert await ids(granted.token) == [str(theirs)]
    reader = await accounts.create_service_token(
        service="audit", all_workspaces=True, read_only=True
    )
    assert await ids(reader.token) == [str(theirs), str(mine)]
    assert await ids(reader.token, workspace_id=str(member.workspace_id)) == [str(mine)]

    # Another's workspace, or one that does not exist: 403, and nothing of it in the answer.
    for token, workspace in (
        (member.token, stranger.workspace_id),
        (granted.token, member.workspace_id),
        (member.token, UUID(int=7)),
    ):
        refused = await api.get(
            "/api/tasks", params={"workspace_id": str(workspace)}, headers=bearer(token)
        )
        assert refused.status == 403
        body = await refused.json()
        assert body["error"]["code"] == "FORBIDDEN"
        assert str(theirs) not in str(body) and str(mine) not in str(body)

    expired = await accounts.create_token(workspace="acme", user="dan")
    await expire(db, expired.token)
    revoked = await accounts.create_token(workspace="acme", user="eve")
    assert await accounts.revoke_token(revoked.token)
    for headers in (
        {},
        bearer("pxp_not-a-token"),
        {"Authorization": "Basic eHl6OnB3"},
        bearer(expired.token),
        bearer(revoked.token),
        {"Cookie": f"praxiom_session={revoked.token}"},
    ):
        response = await api.get("/api/tasks", headers=headers)
        assert response.status == 401, headers
        body = await response.json()
        assert body["error"]["code"] == "UNAUTHENTICATED"
        assert str(mine) not in str(body)

    # The session cookie is a credential like the header.
    by_cookie = await api.get("/api/tasks", headers={"Cookie": f"praxiom_session={member.token}"})
    assert [task["id"] for task in (await by_cookie.json())["tasks"]] == [str(mine)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("status=done", "status"),
        ("status=running,", "status"),
        ("status=Running", "status"),
        ("task_type=Not-A-Type", "task_type"),
        ("workspace_id=acme", "workspace_id"),
        ("cursor=garbage!", "cursor"),
        ("cursor=1.2.3", "cursor"),
        ("cursor=" + "9" * 18 + "." + "0" * 32, "cursor"),
        ("offset=10", "offset"),
        ("limit=5&limit=6", "limit"),
    ],
)
async def test_bad_values_get_422_naming_the_parameter(
    api: Any, member: IssuedToken, query: str, field: str
) -> None:
    response = await api.get(f"/api/tasks?{query}", headers=bearer(member.token))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["message"] == "The query string is not valid"
    assert list(body["fields"]) == [field], body


async def test_the_unauthenticated_are_told_401_before_anything_about_the_query(
    api: Any,
) -> None:
    response = await api.get("/api/tasks?limit=0")
    assert response.status == 401


# -- the plans ------------------------------------------------------------------------------


async def _plan(db: Database, query: str, params: dict[str, Any]) -> dict[str, Any]:
    rows = await db.fetch_all("EXPLAIN (FORMAT JSON) " + QUERIES[query], params)
    return dict(rows[0]["QUERY PLAN"][0]["Plan"])


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        n for n in _nodes(plan) if "Scan" in n["Node Type"] and n["Node Type"] != "Function Scan"
    ]


@pytest.fixture
async def many_tasks(db: Database) -> list[UUID]:
    """20 workspaces of 1,000 tasks each, a fifth pending, a fifth running, the rest completed,
    analyzed: enough that a plan reading more than a page would show."""
    await db.fetch_all(
        "INSERT INTO workspaces (name) SELECT 'plan-' || i FROM generate_series(1, 20) AS i"
    )
    await db.fetch_all(
        "INSERT INTO background_tasks (workspace_id, task_type, status, completed_at, created_at,"
        "                              runner_id, claim_token, started_at, timeout_s)"
        " SELECT w.id, CASE WHEN g % 3 = 0 THEN 'synthesis' ELSE 'research' END,"
        "        (ARRAY['pending', 'running', 'completed', 'completed', 'completed'])[g % 5 + 1],"
        "        CASE WHEN g % 5 > 1 THEN now() END, now() - g * interval '1 second',"
        "        'r', gen_random_uuid(), now(), 60"
        "   FROM workspaces w, generate_series(1, 1000) AS g WHERE w.name LIKE 'plan-%%'"
    )
    await db.fetch_all("ANALYZE background_tasks")
    rows = await db.fetch_all("SELECT id FROM workspaces WHERE name LIKE 'plan-%%' ORDER BY name")
    return [row["id"] for row in rows]


def _params(after: Position | None, **extra: Any) -> dict[str, Any]:
    return {
        "row_limit": 51,
        "after_created": after.created_at if after else None,
        "after_id": after.task_id if after else None,
        "statuses": None,
        "task_type": None,
        **extra,
    }


async def _a_page_in(db: Database, workspace_id: UUID) -> Position:
    row = await db.fetch_one(
        "SELECT created_at, id FROM background_tasks WHERE workspace_id = %(w)s"
        " ORDER BY created_at DESC OFFSET 100 LIMIT 1",
        {"w": workspace_id},
    )
    assert row is not None
    return Position(row["created_at"], row["id"])


async def test_a_workspace_page_is_one_backward_index_scan_from_its_cursor(
    db: Database, many_tasks: list[UUID]
) -> None:
    workspace = many_tasks[3]
    after = await _a_page_in(db, workspace)
    for extra in (
        {},
        {"statuses": ["pending", "running"]},
        {"task_type": "research"},
        {"statuses": ["pending", "running"], "task_type": "synthesis"},
    ):
        for position in (None, after):
            params = _params(position, workspace_id=workspace, **extra)
            plan = await _plan(db, "list_workspace_tasks", params)
            (scan,) = _scans(plan)
            assert scan["Node Type"] == "Index Scan", plan
            # Only the tasks still going: their own index, which holds nothing else.
            index = "active" if extra.get("statuses") else "workspace"
            assert scan["Index Name"] == f"background_tasks_{index}_list_idx"
            assert scan["Scan Direction"] == "Backward"
            assert "Sort" not in {n["Node Type"] for n in _nodes(plan)}
            cond = scan["Index Cond"]
            assert "workspace_id" in cond
            assert ("ROW(created_at, id) <" in cond) == (position is not None), cond


async def test_every_workspace_and_several_are_index_scans_too(
    db: Database, many_tasks: list[UUID]
) -> None:
    after = await _a_page_in(db, many_tasks[0])
    plan = await _plan(db, "list_all_tasks", _params(after))
    (scan,) = _scans(plan)
    assert (scan["Node Type"], scan["Index Name"]) == ("Index Scan", "background_tasks_list_idx")
    assert "ROW(created_at, id) <" in scan["Index Cond"]
    assert "Sort" not in {n["Node Type"] for n in _nodes(plan)}

    # Several workspaces: each one's page by the same index scan, then the newest of them.
    plan = await _plan(db, "list_tasks_in_workspaces", _params(after, workspace_ids=many_tasks[:3]))
    (scan,) = _scans(plan)
    assert (scan["Node Type"], scan["Index Name"]) == (
        "Index Scan",
        "background_tasks_workspace_list_idx",
    )
    assert "ROW(created_at, id) <" in scan["Index Cond"]
