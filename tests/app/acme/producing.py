"""Spawning and cancelling in the application's own transactions, async and sync."""

from typing import Any
from uuid import UUID

import aiopg
import psycopg2

import praxiom_progress
from praxiom_client import TaskPayload


async def import_in_transaction(pool: aiopg.Pool, workspace_id: UUID) -> str | None:
    async with pool.acquire() as conn, conn.cursor() as cur:
        async with cur.begin():
            try:
                payload: TaskPayload = await praxiom_progress.spawn(
                    cur,
                    "import_feed",
                    workspace_id=workspace_id,
                    params={"url": "https://example.com/feed"},
                    spawned_by="acme:importer",
                )
            except praxiom_progress.SpawnRejected as refused:
                errors: dict[str, Any] = refused.fields
                print(refused.message, errors)
                return None
    status: str = payload["status"]
    version: int = payload["version"]
    print(status, version)
    return payload["id"]


async def stop(conn: aiopg.Connection, task_id: str) -> str:
    try:
        return (await praxiom_progress.cancel(conn, task_id))["status"]
    except praxiom_progress.TaskAlreadyFinished as finished:
        return str(finished.payload["status"])
    except praxiom_progress.NotFound:
        return "missing"


def render_sync(dsn: str, workspace_id: str) -> TaskPayload:
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            payload = praxiom_progress.spawn_sync(conn, "render", workspace_id=workspace_id)
            if payload["progress_pct"] > 0:
                praxiom_progress.cancel_sync(conn, UUID(payload["id"]))
        return payload
    finally:
        conn.close()
