"""A service that spawns over HTTP and follows tasks with the client alone."""

import asyncio

from praxiom_client import (
    Client,
    Conflict,
    Invalid,
    Refused,
    SpawnedTask,
    TaskPayload,
    TaskRecord,
    watch_task,
)


async def run_and_follow(url: str, token: str) -> TaskRecord | None:
    async with Client(url, token) as client:
        try:
            task: SpawnedTask = await client.spawn("import_feed", params={"url": "https://x.y"})
        except Invalid as invalid:
            print(invalid.fields)
            return None
        async for payload in client.watch(task["task_id"]):
            pct: int = payload["progress_pct"]
            print(f"{pct}% {payload['message']}")
        try:
            await client.cancel(task["id"])
        except Conflict as conflict:
            if conflict.task is not None:
                print("already", conflict.task["status"])
        return await client.record(task["id"])


async def last_state(url: str, token: str, task_id: str) -> TaskPayload | None:
    last: TaskPayload | None = None
    try:
        async for payload in watch_task(url, task_id, token):
            last = payload
    except Refused as refused:
        print(refused.status, refused.code)
    return last


def main(url: str, token: str, task_ids: list[str]) -> list[TaskPayload | None]:
    async def all_of() -> list[TaskPayload | None]:
        return list(await asyncio.gather(*(last_state(url, token, t) for t in task_ids)))

    return asyncio.run(all_of())
