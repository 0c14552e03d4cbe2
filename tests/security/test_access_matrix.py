"""Every credential kind against every endpoint: the exact status, and no task data in a refusal.

401 before 404 before 403 (DESIGN.md); a refused request changes nothing.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer
from tests.security.kit import (
    ENDPOINTS,
    Scene,
    assert_allowed,
    assert_refused,
    call,
    expire,
    make_scene,
    task_rows,
)

READS = {"progress", "status", "record", "workspace"}
ALLOWED = "allowed"
#: credential kind -> endpoint -> expected answer (a status, or ALLOWED).
EXPECTED: dict[str, dict[str, Any]] = {
    "none": dict.fromkeys(ENDPOINTS, 401),
    "malformed": dict.fromkeys(ENDPOINTS, 401),
    "unknown": dict.fromkeys(ENDPOINTS, 401),
    "expired": dict.fromkeys(ENDPOINTS, 401),
    "revoked": dict.fromkeys(ENDPOINTS, 401),
    "user-member": dict.fromkeys(ENDPOINTS, ALLOWED),
    "user-non-member": dict.fromkeys(ENDPOINTS, 403),
    "service-granted": dict.fromkeys(ENDPOINTS, ALLOWED),
    "service-all-workspaces": dict.fromkeys(ENDPOINTS, ALLOWED),
    "service-not-granted": dict.fromkeys(ENDPOINTS, 403),
    "service-read-only": {e: ALLOWED if e in READS else 403 for e in ENDPOINTS},
}
MALFORMED = (
    {"Authorization": "Basic eHl6OnB3"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer pxp_a pxp_b"},
    {"Authorization": "Bearer " + "x" * 600},
    {"Cookie": "praxiom_session="},
)


async def credentials(kind: str, db: Database, scene: Scene) -> list[dict[str, str]]:
    """Header sets of one kind (several only for `malformed`)."""
    accounts = AccountStore(db)
    if kind == "none":
        return [{}]
    if kind == "malformed":
        return list(MALFORMED)
    if kind == "unknown":
        return [bearer("pxp_" + "A" * 43)]
    if kind in ("expired", "revoked"):
        issued = await accounts.create_token(workspace="acme", user="ann")  # a member's ...
        if kind == "expired":
            await expire(db, issued.token)
        else:
            assert await accounts.revoke_token(issued.token)
        return [bearer(issued.token)]  # ... that no longer counts
    if kind == "user-member":
        return [bearer(scene.member.token)]
    if kind == "user-non-member":
        outsider = await accounts.create_token(workspace="beta", user="bob")
        return [bearer(outsider.token)]
    service = {
        "service-granted": {"workspaces": ["acme"]},
        "service-all-workspaces": {"all_workspaces": True},
        "service-not-granted": {"workspaces": ["beta"]},
        "service-read-only": {"workspaces": ["acme"], "read_only": True},
    }[kind]
    issued_service = await accounts.create_service_token(service="indexer", **service)
    return [bearer(issued_service.token)]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_credential_kind_against_endpoint(
    kind: str,
    endpoint: str,
    aiohttp_client: Any,
    settings: Settings,
    db: Database,
    task_store: TaskStore,
) -> None:
    api = await aiohttp_client(create_app(settings))
    scene = await make_scene(db, task_store)
    expected = EXPECTED[kind][endpoint]
    before = await task_rows(db)
    for headers in await credentials(kind, db, scene):
        resp = await call(api, endpoint, scene.task_id, scene.workspace_id, headers)
        if expected == ALLOWED:
            await assert_allowed(resp, endpoint, scene.task_id)
            continue
        code = "UNAUTHENTICATED" if expected == 401 else "FORBIDDEN"
        await assert_refused(resp, expected, code, scene.task_id, scene.workspace_id)
        assert await task_rows(db) == before, "a refused request changed a task"


@pytest.mark.parametrize("endpoint", ["progress", "status", "record", "cancel"])
@pytest.mark.parametrize("kind", ["user-non-member", "service-not-granted", "service-read-only"])
async def test_a_missing_task_is_404_for_every_valid_token(
    kind: str,
    endpoint: str,
    aiohttp_client: Any,
    settings: Settings,
    db: Database,
    task_store: TaskStore,
) -> None:
    """A task in another workspace is 403 and a missing one 404, for any valid token; a bad
    token gets 401 either way (tested above), so a stranger learns nothing of either."""
    api = await aiohttp_client(create_app(settings))
    scene = await make_scene(db, task_store)
    (headers,) = await credentials(kind, db, scene)
    resp = await call(api, endpoint, uuid4(), scene.workspace_id, headers)
    await assert_refused(resp, 404, "NOT_FOUND", scene.task_id, scene.workspace_id)


async def test_a_service_granted_every_workspace_cannot_spawn_into_one_that_does_not_exist(
    aiohttp_client: Any, settings: Settings, db: Database
) -> None:
    api = await aiohttp_client(create_app(settings))
    issued = await AccountStore(db).create_service_token(service="ops", all_workspaces=True)
    resp = await call(api, "spawn", uuid4(), uuid4(), bearer(issued.token))
    await assert_refused(resp, 403, "FORBIDDEN")
    resp = await api.post(
        "/api/tasks/spawn", json={"task_type": "validation_kit"}, headers=bearer(issued.token)
    )
    await assert_refused(resp, 422, "VALIDATION_ERROR")  # it must say which workspace
