"""A gateway whose PostgreSQL or Redis cannot be reached says so at start, again every
WARN_EVERY_S while it lasts, and once when it is back."""

from __future__ import annotations

import asyncio

from praxiom_progress.gateway.dependencies import DependencyWatch
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import LiveGateway, free_port, wait_for
from tests.log_capture import captured_logs


async def test_a_gateway_started_without_redis_says_so_at_once(settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with captured_logs() as logs:
        gateway = LiveGateway(settings.replace(redis_url=dead))
        await gateway.start()
        try:

            async def warned() -> bool:
                return any(r.get("action") == "dependency_down" for r in logs.records())

            await wait_for(warned, 5)
        finally:
            await gateway.stop()
    down = [r for r in logs.records() if r.get("action") == "dependency_down"]
    assert [r["dependency"] for r in down] == ["Redis"], down  # PostgreSQL is fine
    assert dead not in logs.everything()  # the reason, never the address


async def test_the_warning_repeats_while_down_and_the_recovery_is_logged_once() -> None:
    up = False

    async def check() -> None:
        if not up:
            raise ConnectionRefusedError

    watch = DependencyWatch({"Redis": check}, every_s=0.05)
    with captured_logs() as logs:
        running = asyncio.create_task(watch.run())
        await asyncio.sleep(0.22)
        up = True
        await asyncio.sleep(0.15)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    actions = [r["action"] for r in logs.records() if r.get("action", "").startswith("dep")]
    assert actions.count("dependency_down") >= 3
    assert actions[-1] == "dependency_up" and actions.count("dependency_up") == 1
    assert watch.down == set()
