"""A stream request costs Redis nothing until the caller is authorized for the task: bad,
unknown, refused or over-the-limit callers never make the shared subscription SUBSCRIBE."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import DISPATCHER
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import bearer
from tests.security.kit import make_scene


async def test_no_subscription_before_authorization(
    aiohttp_client: Any, settings: Settings, db: Database, task_store: TaskStore
) -> None:
    app = create_app(settings.replace(streams_per_principal=1))
    api = await aiohttp_client(app)
    scene = await make_scene(db, task_store)
    outsider = await AccountStore(db).create_token(workspace="beta", user="bob")
    watched: list[Any] = []
    dispatcher = app[DISPATCHER]
    watch = dispatcher.watch

    async def spying(stream: Any) -> None:
        watched.append(stream.task_id)
        await watch(stream)

    dispatcher.watch = spying  # type: ignore[method-assign]
    path = f"/api/tasks/{scene.task_id}/progress"
    for headers, status in (
        (bearer("pxp_" + "0" * 43), 401),  # well-formed, unknown
        ({}, 401),
        (bearer(outsider.token), 403),
    ):
        assert (await api.get(path, headers=headers)).status == status
    assert (await api.get(f"/api/tasks/{uuid4()}/progress", **_auth(scene))).status == 404
    assert watched == [], "a refused stream made Redis work"

    first = await api.get(path, **_auth(scene))
    assert first.status == 200 and watched == [scene.task_id]
    over = await api.get(path, **_auth(scene))  # over STREAMS_PER_PRINCIPAL: 429
    assert over.status == 429 and watched == [scene.task_id]
    first.close()


def _auth(scene: Any) -> dict[str, Any]:
    return {"headers": bearer(scene.member.token)}
