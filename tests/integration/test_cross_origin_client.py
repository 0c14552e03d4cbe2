"""The spec's JavaScript client, verbatim but for its URL, in headless Chromium: on a page of
another origin, through nginx (config/nginx.conf), authenticated by the session cookie
(`withCredentials`), against a live gateway and runner.

The page is served from 127.0.0.1:<page port> and the API from 127.0.0.1:<nginx port>: two
origins (CORS applies: the gateway allows the page's origin with credentials) but one site, so
the session cookie (SameSite=Lax, like the demo sign-in sets it) goes along, as it does for
app.example.com calling api.example.com. A completed task must reach `onComplete` with its
final `result_data`, a timed-out one `onError` with the timeout error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from praxiom_progress.taskstate.settings import Settings
from tests.conftest import REPO, LiveGateway, RunnerHarness, bearer, builtin_registry, free_port
from tests.integration.test_demo_page import (  # noqa: F401 (fixtures)
    BROWSER_TEST_TIMEOUT_S,
    browser,
    chromium,
)
from tests.nginx_front import NginxFront, ensure_nginx

#: A verbatim copy of the spec's client (checked against the spec below when it is at hand).
SPEC_CLIENT = (REPO / "tests" / "spec_client.js").read_text(encoding="utf-8")
#: The contract: the copy kept in the repository, and the shared original when it is beside it.
SPECS = [
    REPO / "docs" / "spec" / "task-progress-sse.md",
    REPO.parent / "shared" / "spec" / "task-progress-sse.md",
]
SPEC_URL = "https://api.praxiomai.xyz"
WAIT_S = 20.0

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>spec client</title></head><body>
<script>
window.outcomes = {};
window.updates = {};
function follow(taskId) {
  const updateUI = (ui) => { (window.updates[taskId] ||= []).push(ui); };
  const onComplete = (resultData) => { window.outcomes[taskId] = {complete: resultData}; };
  const onError = (error) => { window.outcomes[taskId] = {error: error}; };
  // The spec's client, verbatim but for its URL:
CLIENT
}
for (const id of new URLSearchParams(location.search).get("tasks").split(",")) follow(id);
</script></body></html>
"""


def test_the_copy_is_the_specs_client() -> None:
    for spec in (path for path in SPECS if path.exists()):
        block = re.search(r"## JavaScript client\n\n```js\n(.*?)```", spec.read_text(), re.S)
        assert block is not None and block.group(1) == SPEC_CLIENT, spec
    assert SPECS[0].exists(), "the repository keeps a copy of the spec"


def page_html(api_url: str) -> str:
    assert SPEC_CLIENT.count(SPEC_URL) == 1
    return _PAGE.replace("CLIENT", SPEC_CLIENT.replace(SPEC_URL, api_url))


class PageServer:
    """Serves the client page from an origin of its own."""

    def __init__(self, html: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.html = html
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/client.html", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.html, content_type="text/html")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def system(
    settings: Settings, runners: RunnerHarness, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """Gateway (with the demo sign-in) behind nginx, a runner whose validation_kit times out
    after 1 s, and the page's own server allowed by CORS_ALLOWED_ORIGINS."""
    await asyncio.to_thread(ensure_nginx)
    page = PageServer("")
    gateway = LiveGateway(settings.replace(cors_allowed_origins=(page.origin,)), demo=True)
    await gateway.start()
    front = NginxFront(tmp_path / "nginx", int(gateway.url.rsplit(":", 1)[1]))
    front.start()
    page.html = page_html(front.url)
    await page.start()
    timeouts = MappingProxyType({**settings.task_timeouts, "validation_kit": 1.0})
    runners.start(builtin_registry(), task_timeouts=timeouts)
    try:
        yield {"api": front.url, "page": page.origin, "nginx": front}
    finally:
        await page.stop()
        front.stop()
        await gateway.stop()


def _sign_in(driver: webdriver.Chrome, api: str, cookie_name: str) -> str:
    """Visit the demo page through nginx: it sets the session cookie; return its token."""
    driver.get(f"{api}/demo")
    cookie = driver.get_cookie(cookie_name)
    assert cookie is not None, driver.get_cookies()
    return str(cookie["value"])


def _follow(
    driver: webdriver.Chrome, page: str, task_ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open the client page on the tasks; what onComplete / onError got, per task."""
    driver.get(f"{page}/client.html?tasks={','.join(task_ids)}")
    script = "return Object.keys(window.outcomes).length"
    try:
        WebDriverWait(driver, WAIT_S, 0.1).until(
            lambda d: d.execute_script(script) == len(task_ids)
        )
    except TimeoutException:
        console = "\n".join(str(entry) for entry in driver.get_log("browser"))
        seen = driver.execute_script("return [window.outcomes, window.updates]")
        raise AssertionError(f"not every task ended in the page: {seen}\n{console}") from None
    outcomes, updates = driver.execute_script("return [window.outcomes, window.updates]")
    return outcomes, updates


async def _spawn(api: str, token: str, task_type: str, step_seconds: float) -> str:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{api}/api/tasks/spawn",
            json={"task_type": task_type, "params": {"step_seconds": step_seconds}},
            headers=bearer(token),
        )
        assert response.status == 202, await response.text()
        return str((await response.json())["task_id"])


async def _record(api: str, token: str, task_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{api}/api/tasks/{task_id}", headers=bearer(token))
        assert response.status == 200
        return dict(await response.json())


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_the_spec_client_on_another_origin_reaches_on_complete_and_on_error(
    system: dict[str, Any],
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    api, page = system["api"], system["page"]
    token = await asyncio.to_thread(_sign_in, browser, api, settings.session_cookie_name)
    done = await _spawn(api, token, "research", 0.5)
    timed_out = await _spawn(api, token, "validation_kit", 2)
    outcomes, updates = await asyncio.to_thread(_follow, browser, page, [done, timed_out])

    final = await _record(api, token, done)
    assert final["status"] == "completed"
    assert outcomes[done] == {"complete": final["result_data"]}
    assert final["result_data"]["summary"]
    assert updates[done][-1] == {"phase": "complete", "pct": 100, "message": final["message"]}

    failed = await _record(api, token, timed_out)
    assert failed["status"] == "failed"
    assert outcomes[timed_out] == {"error": "Validation Kit task timed out after 1s"}
    assert failed["error"] == "Validation Kit task timed out after 1s"

    # It really was cross-origin, through nginx, with the cookie: nginx logged the streams.
    access = (system["nginx"].workdir / "access.log").read_text()
    assert access.count('/progress HTTP/1.1" 200') >= 2, access
