"""`/metrics` of a live gateway shows its event loop held and its garbage collections."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp

from tests.conftest import LiveGateway
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
        time.sleep(0.15)  # noqa: ASYNC251 (on purpose:) something holds the gateway's loop (it is this test's loop)
        gc.collect()
        await asyncio.sleep(0.05)
        after = await scrape(session, url)
    assert above(after, stall, "0.1") == above(before, stall, "0.1") + 1
    busy = "praxiom_gateway_loop_stall_cpu_seconds"  # asleep, not computing: not its own
    assert above(after, busy, "0.1") == above(before, busy, "0.1")
    assert value(after, f"{pause}_count", generation="2") > value(
        before, f"{pause}_count", generation="2"
    )
    assert value(after, "praxiom_gateway_gc_frozen_objects") >= 0
    assert value(after, "praxiom_gateway_gc_freezes_total") == 0  # no burst of opens
