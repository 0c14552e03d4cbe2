"""`/metrics` of a live gateway shows its event loop held and its garbage collections."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp

from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, bearer, spawn, wait_for
from tests.integration.test_metrics import Samples, scrape, value


def above(samples: Samples, name: str, bound: str, **labels: str) -> float:
    """Observations of histogram `name` above the bucket `bound`."""
    total = value(samples, f"{name}_bucket", le="+Inf", **labels)
    return total - value(samples, f"{name}_bucket", le=bound, **labels)


async def test_a_held_loop_and_a_full_collection_show_in_metrics(
    live_gateway: LiveGateway,
) -> None:
    stall = "praxiom_gateway_loop_stall_seconds"
    pause = "praxiom_gateway_gc_pause_seconds"
    async with aiohttp.ClientSession() as session:
        url = f"{live_gateway.url}/metrics"
        before = await scrape(session, url)
        assert value(before, f"{stall}_count") > 0, "the ticker has not run"
        time.sleep(0.15)  # noqa: ASYNC251 (on purpose:) something holds the gateway's loop
        await asyncio.sleep(0.05)  # (it is this test's loop) and the ticker runs late
        held = await scrape(session, url)
        gc.collect()
        await asyncio.sleep(0.05)
        after = await scrape(session, url)
    assert above(held, stall, "0.1") == above(before, stall, "0.1") + 1
    busy = "praxiom_gateway_loop_stall_cpu_seconds"  # asleep, not computing: not its own
    assert above(held, busy, "0.1") == above(before, busy, "0.1")
    assert value(after, f"{pause}_count", generation="2") > value(
        held, f"{pause}_count", generation="2"
    )
    assert value(after, "praxiom_gateway_gc_freezes_total") == 0  # no burst of opens


async def test_an_open_stream_holds_no_keep_alive_timer_and_its_connection_gets_it_back(
    settings: Settings, member: IssuedToken, task_store: TaskStore
) -> None:
    """aiohttp arms a keep-alive timer (GATEWAY_HEADER_TIMEOUT) as each connection opens; a
    stream's is cancelled, else the timers of streams opened together fire in one turn of the
    loop. The slow-header guard itself stays: it is armed again when the stream ends."""
    gateway = LiveGateway(settings)
    await gateway.start()
    try:
        task_id = await spawn(task_store, member.workspace_id, "validation_kit")
        url = f"{gateway.url}/api/tasks/{task_id}/progress"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers=bearer(member.token)) as response:
                await response.content.readuntil(b"\r\n\r\n")  # the first event: streaming
                server = gateway.runner.server
                assert server is not None
                (handler,) = server.connections
                # (aiohttp's own attribute: no public way to see the timer)
                assert handler._keepalive_handle is None, "the stream's timer is still armed"

            # The client went away: the connection is closed, no timer is left behind.
            async def closed() -> bool:
                return not server.connections

            await wait_for(closed)
            async with session.get(f"{gateway.url}/healthz") as health:
                assert health.status == 200
                (handler,) = server.connections
                assert handler._keepalive_handle is not None, "an idle connection has no guard"
    finally:
        await gateway.stop()
