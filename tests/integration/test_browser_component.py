"""The browser component (`/static/praxiom-progress.js`) in headless Chromium, through the real
nginx with config/nginx.conf (HTTP/1.1), against a live gateway and runner.

The pages are served from an origin of their own and reach the API on nginx's with `base-url`
and `with-credentials` (the session cookie, allowed by CORS_ALLOWED_ORIGINS): Chromium gives
one origin at most six HTTP/1.1 connections, so a page of 20 per-task streams stalls past the
sixth, and the same 20 tasks as `<praxiom-task workspace-id=…>` share one workspace stream and
all reach 100 %. `<praxiom-workspace-tasks>` shows a task spawned after the page loaded, and a
reload finds the running tasks again.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from praxiom_progress.gateway.keys import GATEWAY_STORE
from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import (
    REPO,
    LiveGateway,
    RunnerHarness,
    bearer,
    builtin_registry,
    free_port,
    wait_for,
)
from tests.integration.test_demo_page import (  # noqa: F401 (fixtures)
    BROWSER_TEST_TIMEOUT_S,
    browser,
    chromium,
)
from tests.nginx_front import NginxFront, ensure_nginx

WAIT_S = 30.0
#: Chromium's limit of HTTP/1.1 connections to one origin.
CONNECTIONS_PER_ORIGIN = 6
#: How long the control page is watched for a seventh stream that never comes.
STALL_WATCH_S = 3.0

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>praxiom-progress elements</title>
<script>
window.seen = {}; window.done = {}; window.errors = [];
document.addEventListener("praxiom-progress",
  (e) => (window.seen[e.detail.id] ||= []).push(e.detail.progress_pct));
document.addEventListener("praxiom-done", (e) => { window.done[e.detail.id] = e.detail.status; });
document.addEventListener("praxiom-error", (e) => window.errors.push(e.detail));
</script>
<script type="module" src="API/static/praxiom-progress.js"></script>
</head><body>
BODY
</body></html>
"""


class PageServer:
    """Serves the test's pages from an origin of their own; `pages[name]` is the body."""

    def __init__(self, api: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.api = api
        self.pages: dict[str, str] = {}
        self.documents: dict[str, str] = {}  # whole pages, served as they are
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}.html", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.documents:
            return web.Response(text=self.documents[name], content_type="text/html")
        body = self.pages.get(name)
        if body is None:
            raise web.HTTPNotFound()
        page = _PAGE.replace("API", self.api).replace("BODY", body)
        return web.Response(text=page, content_type="text/html")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class System:
    api: str
    pages: PageServer
    nginx: NginxFront
    gateway: LiveGateway
    token: str = ""
    workspace_id: str = ""

    def attributes(self) -> str:
        return f'base-url="{html.escape(self.api)}" with-credentials'

    def stream_requests(self) -> dict[str, int]:
        """How many task and workspace streams nginx has passed on so far."""
        log = (self.nginx.workdir / "access.log").read_text()
        return {
            "task": log.count("/progress HTTP/1.1") - log.count("/api/workspaces/"),
            "workspace": sum(
                1 for line in log.splitlines() if "/api/workspaces/" in line and "/progress" in line
            ),
        }


@pytest.fixture
async def system(
    settings: Settings, runners: RunnerHarness, tmp_path: Path
) -> AsyncIterator[System]:
    """The gateway (with the demo sign-in) behind nginx, a runner that runs 45 tasks at once,
    and the pages' own server, allowed by CORS_ALLOWED_ORIGINS."""
    await asyncio.to_thread(ensure_nginx)
    pages = PageServer("")
    gateway = LiveGateway(settings.replace(cors_allowed_origins=(pages.origin,)), demo=True)
    await gateway.start()
    front = NginxFront(tmp_path / "nginx", int(gateway.url.rsplit(":", 1)[1]))
    front.start()
    pages.api = front.url
    await pages.start()
    runners.start(builtin_registry(), runner_concurrency=45)
    try:
        yield System(front.url, pages, front, gateway)
    finally:
        await pages.stop()
        front.stop()
        await gateway.stop()


async def _sign_in(system: System, driver: webdriver.Chrome, settings: Settings) -> None:
    """Visit the demo page through nginx: it sets the session cookie (SameSite=Lax: the pages'
    origin is the same site, so their requests carry it)."""

    def visit() -> str:
        driver.get(f"{system.api}/demo")
        cookie = driver.get_cookie(settings.session_cookie_name)
        assert cookie is not None, driver.get_cookies()
        driver.get("about:blank")  # leave: the demo page's own stream closes
        return str(cookie["value"])

    system.token = await asyncio.to_thread(visit)
    principal = await system.gateway.app[GATEWAY_STORE].principal(hash_token(system.token))
    assert principal is not None
    (workspace_id,) = principal.workspace_ids
    system.workspace_id = str(workspace_id)


async def _spawn(system: System, count: int, step_seconds: float) -> list[str]:
    """`count` validation kits, one after the other (so they are listed in this order)."""
    spawned = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            response = await session.post(
                f"{system.api}/api/tasks/spawn",
                json={"task_type": "validation_kit", "params": {"step_seconds": step_seconds}},
                headers=bearer(system.token),
            )
            assert response.status == 202, await response.text()
            spawned.append(str((await response.json())["task_id"]))
    return spawned


def _logged(system: System, **least: int) -> Callable[[], Awaitable[dict[str, int] | None]]:
    """A check for `wait_for`: the stream counts, once nginx has logged at least `least`."""

    async def check() -> dict[str, int] | None:
        counts = system.stream_requests()
        return counts if all(counts[kind] >= n for kind, n in least.items()) else None

    return check


def _wait(driver: webdriver.Chrome, what: str, script: str, expected: Any) -> None:
    try:
        WebDriverWait(driver, WAIT_S, 0.1).until(lambda d: d.execute_script(script) == expected)
    except TimeoutException:
        seen = driver.execute_script(script)
        state = driver.execute_script("return [window.seen, window.done, window.errors]")
        console = "\n".join(str(entry) for entry in driver.get_log("browser"))
        message = f"not within {WAIT_S:g}s: {what} (got {seen!r})\n{state}\n{console}"
        raise AssertionError(message) from None


_STATES = (
    "return [...document.querySelectorAll('praxiom-task')].map(t => t.getAttribute('progress'))"
)


def _shared_page(driver: webdriver.Chrome, system: System, task_ids: list[str]) -> dict[str, Any]:
    system.pages.pages["shared"] = "\n".join(
        f'<praxiom-task task-id="{t}" workspace-id="{system.workspace_id}" {system.attributes()}>'
        "</praxiom-task>"
        for t in task_ids
    )
    driver.get(f"{system.pages.origin}/shared.html")
    _wait(driver, "all 20 bars at 100 %", _STATES, ["100"] * len(task_ids))
    done = "return Object.values(window.done)"
    _wait(driver, "20 praxiom-done events, all completed", done, ["completed"] * len(task_ids))
    result: dict[str, Any] = driver.execute_script(
        "const t = document.querySelector('praxiom-task');"
        "const bar = t.shadowRoot.querySelector('[part~=bar]');"
        "return {seen: window.seen, errors: window.errors, role: bar.getAttribute('role'),"
        " now: bar.getAttribute('aria-valuenow'), text: bar.getAttribute('aria-valuetext')}"
    )
    driver.get("about:blank")  # leave: nginx logs the page's streams once they end
    return result


def _control_page(driver: webdriver.Chrome, system: System, task_ids: list[str]) -> list[Any]:
    """20 per-task streams: the first six connect, the rest wait for a connection that is not
    given back while those six tasks run."""
    system.pages.pages["control"] = "\n".join(
        f'<praxiom-task task-id="{t}" {system.attributes()}></praxiom-task>' for t in task_ids
    )
    driver.get(f"{system.pages.origin}/control.html")
    shown = "return document.querySelectorAll('praxiom-task[status]').length"
    _wait(driver, "six streams bring their task's state", shown, CONNECTIONS_PER_ORIGIN)
    ended = "return document.querySelectorAll('praxiom-task[status=completed]').length"
    watch_until = time.monotonic() + STALL_WATCH_S
    while time.monotonic() < watch_until:
        assert driver.execute_script(shown) == CONNECTIONS_PER_ORIGIN
        assert driver.execute_script(ended) == 0  # no connection was given back meanwhile
        time.sleep(0.1)
    states: list[Any] = driver.execute_script(_STATES)
    driver.get("about:blank")  # leave: the six streams close
    return states


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_twenty_bars_on_one_workspace_stream_reach_100_while_twenty_task_streams_stall(
    system: System,
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    await _sign_in(system, browser, settings)

    # 20 running tasks, each bar its own <praxiom-task workspace-id=…>: all reach 100 %, live.
    shared = await _spawn(system, 20, step_seconds=2.5)
    before = system.stream_requests()
    seen = await asyncio.to_thread(_shared_page, browser, system, shared)
    after = await wait_for(_logged(system, workspace=before["workspace"] + 1), timeout_s=WAIT_S)
    assert after["task"] == before["task"], "no task stream of its own"
    assert after["workspace"] == before["workspace"] + 1, "one workspace stream for the 20"
    assert seen["errors"] == []
    for task_id in shared:
        pcts = seen["seen"][task_id]
        assert pcts[-1] == 100 and pcts == sorted(pcts), (task_id, pcts)
    assert sum(1 for t in shared if min(seen["seen"][t]) < 100) >= 15, "seen live, not only done"
    assert (seen["role"], seen["now"]) == ("progressbar", "100")
    assert seen["text"].startswith("100% (completed), complete: ")

    # The control: the same, as 20 separate per-task streams. Six connect; the others stall.
    control = await _spawn(system, 20, step_seconds=8)
    states = await asyncio.to_thread(_control_page, browser, system, control)
    assert sum(1 for s in states if s is not None) == CONNECTIONS_PER_ORIGIN
    assert states.count(None) == 20 - CONNECTIONS_PER_ORIGIN


def _list_page(driver: webdriver.Chrome, system: System) -> None:
    system.pages.pages["list"] = (
        f'<praxiom-workspace-tasks workspace-id="{system.workspace_id}" fade-after="0" '
        f"{system.attributes()}></praxiom-workspace-tasks>"
    )
    driver.get(f"{system.pages.origin}/list.html")


_LISTED = "return document.querySelector('praxiom-workspace-tasks').taskIds"
_LISTED_STATUS = (
    "const list = document.querySelector('praxiom-workspace-tasks');"
    "return Object.fromEntries([...list.shadowRoot.querySelectorAll('praxiom-task')]"
    ".map(t => [t.getAttribute('task-id'), t.getAttribute('status')]))"
)


def _wait_listed(driver: webdriver.Chrome, what: str, check: Any) -> list[str]:
    try:
        WebDriverWait(driver, WAIT_S, 0.1).until(lambda d: check(d.execute_script(_LISTED)))
    except TimeoutException:
        console = "\n".join(str(entry) for entry in driver.get_log("browser"))
        listed = driver.execute_script(_LISTED)
        message = f"not within {WAIT_S:g}s: {what} (listed {listed})\n{console}"
        raise AssertionError(message) from None
    return list(driver.execute_script(_LISTED))


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_the_workspace_list_shows_a_spawn_live_and_a_reload_finds_the_running_tasks(
    system: System,
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    await _sign_in(system, browser, settings)
    running = await _spawn(system, 2, step_seconds=10)
    await asyncio.to_thread(_list_page, browser, system)
    await asyncio.to_thread(
        _wait_listed, browser, "the running tasks are listed", lambda ids: set(running) <= set(ids)
    )

    # Spawned after the page loaded: it appears on top, live.
    (newcomer,) = await _spawn(system, 1, step_seconds=10)
    listed = await asyncio.to_thread(
        _wait_listed, browser, "the new task appears", lambda ids: newcomer in ids
    )
    assert listed[0] == newcomer

    # A reload finds every running task again, newest first, each live.
    await asyncio.to_thread(browser.refresh)
    everything = [newcomer, *reversed(running)]
    listed = await asyncio.to_thread(
        _wait_listed, browser, "the reload lists them", lambda ids: ids[:3] == everything
    )
    statuses = await asyncio.to_thread(browser.execute_script, _LISTED_STATUS)
    assert {statuses[t] for t in everything} <= {"pending", "running"}, statuses
    assert await asyncio.to_thread(browser.execute_script, "return window.errors") == []


# -- the README's example, as written ------------------------------------------------------

README_API = "https://api.example.com"


def readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## The browser component")
    section = readme[start : readme.index("\n## ", start + 1)]
    block = re.search(r"^```html\n(.*?)^```", section, re.M | re.S)
    assert block is not None, "the README shows the elements in an html block"
    return block.group(1)


def _readme_page(driver: webdriver.Chrome, system: System, task_id: str) -> dict[str, Any]:
    example = readme_example()
    assert example.count(README_API) == 3
    page = (
        example.replace(README_API, system.api)
        .replace("TASK_ID", task_id)
        .replace("WORKSPACE_ID", system.workspace_id)
    )
    system.pages.documents["readme"] = f"<!doctype html><meta charset=utf-8>{page}"
    driver.get(f"{system.pages.origin}/readme.html")
    outcome = "return document.getElementById('outcome').textContent"
    _wait(driver, "the README's praxiom-done handler ran", outcome, "validation_kit completed")
    listed = "return document.querySelector('praxiom-workspace-tasks').taskIds.length > 0"
    _wait(driver, "the README's list shows the task", listed, True)
    looks: dict[str, Any] = driver.execute_script(
        "const root = document.querySelector('praxiom-task').shadowRoot;"
        "const style = (part) => getComputedStyle(root.querySelector(`[part~=${part}]`));"
        "return {fill: style('fill').backgroundColor, height: style('bar').height,"
        " message: style('message').fontStyle};"
    )
    driver.get("about:blank")
    return looks


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_the_readme_example_runs_as_written(
    system: System,
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    await _sign_in(system, browser, settings)
    (task_id,) = await _spawn(system, 1, step_seconds=0.3)
    looks = await asyncio.to_thread(_readme_page, browser, system, task_id)
    assert looks == {"fill": "rgb(102, 51, 153)", "height": "8px", "message": "italic"}


# -- access lost while the page is open ----------------------------------------------------

_NOT_A_MEMBER = "You may not see this workspace's tasks"
_LOST = """
const tasks = [...document.querySelectorAll('praxiom-task')];
const list = document.querySelector('praxiom-workspace-tasks');
const error = list.shadowRoot.querySelector('[part~=error]');
return {
  statuses: tasks.map((t) => t.getAttribute('status')),
  errors: window.errors.map((e) => e.status),
  list: error.hidden ? null : error.textContent,
};
"""


def _open_lost_page(driver: webdriver.Chrome, system: System, task_id: str) -> None:
    attributes = system.attributes()
    system.pages.pages["lost"] = (
        f'<praxiom-task task-id="{task_id}" workspace-id="{system.workspace_id}" {attributes}>'
        f'</praxiom-task><praxiom-task task-id="{task_id}" {attributes}></praxiom-task>'
        f'<praxiom-workspace-tasks workspace-id="{system.workspace_id}" {attributes}>'
        "</praxiom-workspace-tasks>"
    )
    driver.get(f"{system.pages.origin}/lost.html")
    _wait(driver, "both bars running", _STATES.replace("progress", "status"), ["running"] * 2)


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_losing_access_mid_task_is_shown_and_told_as_an_event(
    system: System,
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    await _sign_in(system, browser, settings)
    (task_id,) = await _spawn(system, 1, step_seconds=10)
    await asyncio.to_thread(_open_lost_page, browser, system, task_id)

    # The demo user leaves the workspace: both streams end, their reconnections get 403, and
    # each element says so: the two bars, the list and the bar of its row.
    accounts = AccountStore(system.gateway.app[GATEWAY_STORE].db)
    assert await accounts.remove_member(workspace="demo", user="demo")
    expected = {"statuses": ["lost", "lost"], "errors": [403] * 4, "list": _NOT_A_MEMBER}
    await asyncio.to_thread(_wait, browser, "access lost everywhere", _LOST, expected)


# -- a dropped connection ------------------------------------------------------------------


def _open_resume_page(driver: webdriver.Chrome, system: System, task_id: str) -> None:
    attributes = system.attributes()
    system.pages.pages["resume"] = (
        f'<praxiom-task task-id="{task_id}" workspace-id="{system.workspace_id}" {attributes}>'
        f'</praxiom-task><praxiom-task task-id="{task_id}" {attributes}></praxiom-task>'
        "<script>window.each = [[], []]; document.querySelectorAll('praxiom-task').forEach("
        "(t, i) => t.addEventListener('praxiom-progress', (e) => "
        "window.each[i].push(e.detail.progress_pct)));</script>"
    )
    driver.get(f"{system.pages.origin}/resume.html")
    _wait(driver, "both bars running", _STATES.replace("progress", "status"), ["running"] * 2)


@pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)
async def test_both_kinds_of_stream_resume_after_the_connection_drops(
    system: System,
    browser: webdriver.Chrome,  # noqa: F811 (the fixture imported above)
    settings: Settings,
) -> None:
    await _sign_in(system, browser, settings)
    (task_id,) = await _spawn(system, 1, step_seconds=3)
    await asyncio.to_thread(_open_resume_page, browser, system, task_id)

    # nginx goes away and comes back on the same address: the browser reconnects each stream
    # by itself, with Last-Event-ID, and both bars go on to the end.
    system.nginx.stop()
    await asyncio.sleep(1)
    system.nginx.start()
    await asyncio.to_thread(_wait, browser, "both bars at 100 %", _STATES, ["100", "100"])
    each, errors = await asyncio.to_thread(
        browser.execute_script, "return [window.each, window.errors]"
    )
    assert errors == []
    for pcts in each:  # the shared stream's element, then the one with its own
        assert pcts == sorted(pcts) and pcts[-1] == 100, each
        assert len(set(pcts)) >= 3, each  # live before the drop and after it
