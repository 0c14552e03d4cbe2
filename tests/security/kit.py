"""What the security tests share: the five endpoints, the credential kinds, refusal checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiohttp import ClientResponse

from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.store import TaskStore
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import bearer, spawn

SPAWN = "/api/tasks/spawn"
ENDPOINTS = ("spawn", "progress", "status", "record", "cancel", "workspace")
SUCCESS = {"spawn": 202, "progress": 200, "status": 200, "record": 200, "cancel": 202,
           "workspace": 200}  # fmt: skip
#: The endpoints that answer with a stream.
STREAMS = ("progress", "workspace")
#: Words only a task's own data would put into a body.
TASK_WORDS = ("validation_kit", "phase", "result_data", "progress_pct", "Queued", "pending")


@dataclass(frozen=True)
class Scene:
    """One workspace `acme` with a pending task, a member `ann`, and another workspace `beta`."""

    member: IssuedToken
    task_id: UUID

    @property
    def workspace_id(self) -> UUID:
        return self.member.workspace_id


async def make_scene(db: Database, task_store: TaskStore) -> Scene:
    accounts = AccountStore(db)
    member = await accounts.create_token(workspace="acme", user="ann")
    await accounts.create_token(workspace="beta", user="bob")
    task_id = await spawn(task_store, member.workspace_id, "validation_kit", step_seconds=0)
    return Scene(member, task_id)


async def expire(db: Database, token: str) -> None:
    row = await db.fetch_one(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' "
        "WHERE token_hash = %(h)s RETURNING id",
        {"h": hash_token(token)},
    )
    assert row is not None


async def call(
    api: Any, endpoint: str, task_id: UUID, workspace_id: UUID, headers: dict[str, str]
) -> ClientResponse:
    """One request to `endpoint` about `task_id` (spawn: into `workspace_id`; workspace: the
    stream of `workspace_id`, which holds the task)."""
    if endpoint == "spawn":
        body = {"task_type": "validation_kit", "workspace_id": str(workspace_id), "params": {}}
        return await api.post(SPAWN, json=body, headers=headers)
    method, path = {
        "progress": ("GET", f"/api/tasks/{task_id}/progress"),
        "status": ("GET", f"/api/tasks/{task_id}/status"),
        "record": ("GET", f"/api/tasks/{task_id}"),
        "cancel": ("POST", f"/api/tasks/{task_id}/cancel"),
        "workspace": ("GET", f"/api/workspaces/{workspace_id}/progress"),
    }[endpoint]
    return await api.request(method, path, headers=headers)


async def assert_allowed(resp: ClientResponse, endpoint: str, task_id: UUID) -> None:
    assert resp.status == SUCCESS[endpoint], (resp.status, await resp.text())
    if endpoint in STREAMS:
        assert resp.content_type == "text/event-stream"
        first = await resp.content.readuntil(b"\r\n\r\n")
        assert str(task_id).encode() in first
        resp.close()  # the stream stays open: read no further
        return
    body = await resp.json()
    if endpoint != "spawn":
        assert body["id"] == str(task_id)


def assert_no_task_bytes(raw: bytes, *secrets: object) -> None:
    text = raw.decode("utf-8")
    for secret in (*map(str, secrets), *TASK_WORDS):
        assert secret not in text, f"{secret!r} leaked in {text!r}"


async def assert_refused(
    resp: ClientResponse, status: int, code: str, *secrets: object
) -> dict[str, Any]:
    """The JSON error with this status and code, and not a byte of the task."""
    if resp.status != status:  # an open stream would never finish reading: fail now
        resp.close()
        raise AssertionError(f"expected {status}, got {resp.status}")
    raw = await resp.read()
    assert resp.content_type == "application/json", raw
    body = json.loads(raw)
    assert set(body) - {"fields"} == {"error"} and body["error"]["code"] == code, body
    assert_no_task_bytes(raw, *secrets)
    if status == 401:
        assert resp.headers.get("WWW-Authenticate") == "Bearer"
    return body


async def task_rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetch_all("SELECT id, status, version FROM background_tasks ORDER BY id")


def cookie(token: str, name: str = "praxiom_session") -> dict[str, str]:
    return {"Cookie": f"{name}={token}"}


__all__ = ["bearer"]
