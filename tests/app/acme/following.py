"""A service that follows tasks with the client alone."""

import asyncio

from praxiom_client import StreamRefused, TaskPayload, watch_task


async def last_state(url: str, token: str, task_id: str) -> TaskPayload | None:
    last: TaskPayload | None = None
    try:
        async for payload in watch_task(url, task_id, token):
            last = payload
            pct: int = payload["progress_pct"]
            print(f"{pct}% {payload['message']}")
    except StreamRefused as refused:
        print(refused.status, refused.code)
    return last


def main(url: str, token: str, task_ids: list[str]) -> list[TaskPayload | None]:
    async def all_of() -> list[TaskPayload | None]:
        return list(await asyncio.gather(*(last_state(url, token, t) for t in task_ids)))

    return asyncio.run(all_of())
