"""config/nginx.conf, run by a real nginx in front of a live gateway.

Proves what the config is for: each event reaches the client as the runner publishes it (one by
one, never batched), an idle stream outlives nginx's proxy_read_timeout thanks to the gateway's
keep-alive comments, and the gateway's `X-Accel-Buffering: no` is what nginx obeys (with
buffering switched on, events still arrive one by one; with the header ignored as well, they
do not: that control shows the one-by-one check can fail). nginx is Debian's package,
installed when missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from praxiom_progress.runner.handlers import HandlerRegistry, TaskContext
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, RunnerHarness, bearer, spawn
from tests.nginx_front import SSE_READ_TIMEOUT, NginxFront, ensure_nginx
from tests.sse_client import events, stream_timeout
from tests.workspace_client import WorkspaceClient

pytestmark = pytest.mark.timeout(600)  # room for installing nginx on a fresh machine

STEPS = 4
#: How long an event may take from publish to client: far below any batching delay.
PROMPT_S = 1.0
#: The idle tests' nginx proxy_read_timeout for the stream.
SHORT_READ_TIMEOUT = "proxy_read_timeout 2s;"


#: The shipped config turned back to nginx's defaults for proxying (buffered, HTTP/1.0).
_NGINX_DEFAULTS = {
    "proxy_buffering off;": "proxy_buffering on;",
    "proxy_http_version 1.1;": "proxy_http_version 1.0;",
}


class GatedTask:
    """Reports one step each time the test opens the gate, so the test decides when each
    update is published and can check it arrived before publishing the next."""

    task_type = "gated"

    def __init__(self) -> None:
        self.gate: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, task: TaskContext) -> dict[str, Any]:
        for step in range(1, STEPS + 1):
            await self.gate.get()
            await task.report_progress("running", step * 20, f"step {step}")
        await self.gate.get()
        return {"steps": STEPS}

    def registry(self) -> HandlerRegistry:
        registry = HandlerRegistry()
        registry.register(self.task_type, self)
        return registry


@pytest.fixture(scope="module")
def nginx_installed() -> None:
    ensure_nginx()


@pytest.fixture
def nginx_front(nginx_installed: None, tmp_path: Path) -> Iterator[Any]:
    """A factory: `nginx_front(gateway, changes)` starts nginx in front of `gateway`."""
    started: list[NginxFront] = []

    def start(gateway: LiveGateway, changes: dict[str, str] | None = None) -> NginxFront:
        port = int(gateway.url.rsplit(":", 1)[1])
        front = NginxFront(tmp_path / f"nginx-{len(started)}", port, changes or {})
        started.append(front)
        front.start()
        return front

    yield start
    for front in started:
        front.stop()


async def _gateway(settings: Settings) -> LiveGateway:
    gateway = LiveGateway(settings)
    await gateway.start()
    return gateway


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    live = await _gateway(settings)
    yield live
    await live.stop()


def test_the_shipped_config_passes_nginx_t(nginx_front: Any, tmp_path: Path) -> None:
    front = NginxFront(tmp_path / "check", 8080)
    assert "syntax is ok" in front.check()


async def _one_by_one(front: NginxFront, token: str, task_id: UUID, gated: GatedTask) -> None:
    """Open each step's gate only once the previous step's event has reached the client."""
    async with aiohttp.ClientSession(timeout=stream_timeout(10)) as session:
        url = f"{front.url}/api/tasks/{task_id}/progress"
        try:
            opened = await asyncio.wait_for(session.get(url, headers=bearer(token)), PROMPT_S * 3)
        except TimeoutError:
            raise AssertionError(
                "not even the headers arrived: nginx is holding the stream back"
            ) from None
        async with opened as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Cache-Control"] == "no-cache"
            # nginx obeyed the gateway's header and consumed it.
            assert "X-Accel-Buffering" not in response.headers
            stream = events(response)
            try:
                first = await asyncio.wait_for(anext(stream), PROMPT_S * 3)
            except TimeoutError:
                raise AssertionError(
                    "the first event did not arrive: nginx is holding the stream back"
                ) from None
            assert first.payload["status"] in ("pending", "running")
            for step in range(1, STEPS + 1):
                await asyncio.sleep(0.2)  # a gap: nothing else is in flight
                published = time.monotonic()
                await gated.gate.put(None)
                while True:
                    try:
                        event = await asyncio.wait_for(anext(stream), PROMPT_S)
                    except TimeoutError:
                        raise AssertionError(
                            f"step {step}'s event did not arrive within {PROMPT_S}s of being "
                            "published: nginx is holding the stream back"
                        ) from None
                    if event.payload["progress_pct"] == step * 20:
                        break
                assert time.monotonic() - published < PROMPT_S
            await gated.gate.put(None)
            last = [event async for event in stream][-1]
            assert last.payload["status"] == "completed"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="as-shipped"),
        # Buffering on: the gateway's X-Accel-Buffering: no still turns it off per response.
        pytest.param({"proxy_buffering off;": "proxy_buffering on;"}, id="buffering-on"),
        # nginx's own defaults (HTTP/1.0 upstream, buffering on): only the header streams it.
        pytest.param(_NGINX_DEFAULTS, id="nginx-defaults"),
    ],
)
async def test_events_arrive_one_by_one_as_published(
    changes: dict[str, str],
    gateway: LiveGateway,
    nginx_front: Any,
    runners: RunnerHarness,
    task_store: TaskStore,
    member: IssuedToken,
) -> None:
    front = nginx_front(gateway, changes)
    gated = GatedTask()
    runners.start(gated.registry())
    task_id = await spawn(task_store, member.workspace_id, gated.task_type)
    await _one_by_one(front, member.token, task_id, gated)


async def test_ignoring_the_header_with_buffering_on_holds_events_back(
    gateway: LiveGateway,
    nginx_front: Any,
    runners: RunnerHarness,
    task_store: TaskStore,
    member: IssuedToken,
) -> None:
    """The control: nginx's defaults with the gateway's header ignored hold the stream back
    (nothing arrives until the task ends), and the same check says so: so the passing
    `nginx-defaults` case above shows it is the header that makes nginx stream."""
    ignored = "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;"
    front = nginx_front(gateway, {**_NGINX_DEFAULTS, "proxy_buffering off;": ignored})
    gated = GatedTask()
    runners.start(gated.registry())
    task_id = await spawn(task_store, member.workspace_id, gated.task_type)
    with pytest.raises(AssertionError, match="holding the stream back"):
        await asyncio.wait_for(_one_by_one(front, member.token, task_id, gated), 30)
    for _ in range(STEPS + 1):
        await gated.gate.put(None)  # let the handler finish


async def _lines_until_closed(url: str, token: str, seconds: float) -> tuple[list[str], bool]:
    """Raw stream lines for up to `seconds`; whether the stream was still open then."""
    lines: list[str] = []
    async with aiohttp.ClientSession(timeout=stream_timeout(seconds + 5)) as session:
        async with session.get(url, headers=bearer(token)) as response:
            assert response.status == 200, await response.text()
            deadline = time.monotonic() + seconds
            try:
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        raw = await asyncio.wait_for(response.content.readline(), left)
                    except TimeoutError:
                        break
                    if not raw:
                        return lines, False  # the stream ended
                    lines.append(raw.decode().rstrip("\r\n"))
            except aiohttp.ClientPayloadError:
                return lines, False  # cut mid-chunk
            return lines, True


@pytest.mark.parametrize(
    ("ping_s", "survives"),
    [
        pytest.param(0.5, True, id="pings-keep-it-open"),
        pytest.param(10.0, False, id="no-pings-nginx-cuts-it"),
    ],
)
async def test_an_idle_stream_outlives_the_proxy_read_timeout_thanks_to_pings(
    ping_s: float,
    survives: bool,
    settings: Settings,
    nginx_front: Any,
    task_store: TaskStore,
    member: IssuedToken,
) -> None:
    # No runner: the task stays pending, and nothing but pings flows (no idle re-emits).
    live = await _gateway(settings.replace(sse_ping_interval_s=ping_s, sse_idle_timeout_s=60.0))
    try:
        front = nginx_front(live, {SSE_READ_TIMEOUT: SHORT_READ_TIMEOUT})
        task_id = await spawn(task_store, member.workspace_id, "research")
        url = f"{front.url}/api/tasks/{task_id}/progress"
        lines, still_open = await _lines_until_closed(url, member.token, 5.0)
        assert sum(line.startswith("data:") for line in lines) == 1, lines
        assert still_open is survives, f"{lines}\n{front.log()[-2000:]}"
        if survives:
            assert lines.count(": ping") >= 5
        else:
            assert "upstream timed out" in front.log()
    finally:
        await live.stop()


async def test_the_metrics_are_not_served_through_nginx(
    nginx_front: Any, gateway: LiveGateway
) -> None:
    """Prometheus scrapes the gateway directly; nginx faces the internet."""
    front = nginx_front(gateway)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/metrics") as direct:
            assert direct.status == 200  # the gateway itself still serves it
        for path in ("/metrics", "/metrics?x=1"):
            async with session.get(f"{front.url}{path}") as proxied:
                assert proxied.status == 404, path
                assert "praxiom_" not in await proxied.text()
        async with session.get(f"{front.url}/healthz") as probe:
            assert probe.status == 200  # the probes stay reachable for load balancers


async def test_a_workspace_stream_through_the_shipped_config_arrives_one_by_one(
    gateway: LiveGateway,
    nginx_front: Any,
    runners: RunnerHarness,
    task_store: TaskStore,
    member: IssuedToken,
) -> None:
    """The workspace stream's route is a stream's location too (no buffering, the long
    timeouts): each task's update reaches the client as it is published."""
    front = nginx_front(gateway)
    gated = GatedTask()
    runners.start(gated.registry())
    task_id = str(await spawn(task_store, member.workspace_id, gated.task_type))
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as session:
        async with WorkspaceClient(session, front.url, member.workspace_id, member.token) as c:
            assert c.status == 200
            await c.wait_for(lambda c: c.newest().get(task_id, {}).get("status") == "running")
            for step in range(1, STEPS + 1):
                published = time.monotonic()
                await gated.gate.put(None)
                await c.wait_for(
                    lambda c, step=step: c.newest()[task_id]["progress_pct"] == step * 20,
                    timeout_s=PROMPT_S,
                )
                assert time.monotonic() - published < PROMPT_S
            await gated.gate.put(None)
            await c.wait_for(lambda c: c.newest()[task_id]["status"] == "completed")
