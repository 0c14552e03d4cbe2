"""The demo page (dev mode only), in headless Chromium against a real gateway and runner.

The browser visits the page, is signed in by an HttpOnly session cookie, spawns a fast task and
watches its card reach 100 % and "completed", makes one fail, and cancels a slow one; the live
parts are the browser component's elements (`<praxiom-task>`, `<praxiom-workspace-tasks>`) over
one workspace stream. Chromium and
chromedriver are Debian's `chromium` and `chromium-driver`; when they are missing the first
browser test installs them with apt-get (a minute or two), and fails, never skips, when it cannot.

Set DEMO_SCREENSHOT=/some/file.png to keep a picture of the page taken mid-run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from praxiom_progress.gateway import demo, keys
from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import GATEWAY_STORE
from praxiom_progress.runner import builtin
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import LiveGateway, RunnerHarness, builtin_registry
from tests.debian_packages import APT_TIMEOUT_S, ensure_installed

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_PACKAGES = ("chromium", "chromium-driver")
#: Room for installing Chromium on the first browser test; once installed a test takes seconds.
BROWSER_TEST_TIMEOUT_S = APT_TIMEOUT_S + 120
WAIT_S = 20.0
FAST, SLOW = "0.2", "2"

browser_test = pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S)


# -- Chromium, installed when missing -------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> None:
    """Chromium and chromedriver at /usr/bin, installed from Debian's packages when missing."""
    ensure_installed([CHROMIUM, CHROMEDRIVER], APT_PACKAGES)


@pytest.fixture
def browser(chromium: None, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1200",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium did not start: {exc.msg}", pytrace=False)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


# -- the system under test: a dev-mode gateway and an in-process runner ---------------------


@pytest.fixture
async def demo_gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    gateway = LiveGateway(settings, demo=True)
    await gateway.start()
    yield gateway
    await gateway.stop()


# -- driving the page (in a thread: the event loop keeps serving the gateway) ---------------


def _find(scope: WebDriver | WebElement, testid: str) -> WebElement:
    return scope.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")


def _text(card: WebElement, testid: str) -> str:
    return str(_find(card, testid).get_attribute("textContent")).strip()


#: What a card shows live comes from its <praxiom-task>: the host's `status` attribute, and the
#: text of the element's parts.
_LIVE = """
const task = arguments[0].querySelector("praxiom-task") || arguments[0];
if (arguments[1] === "status") return task.getAttribute("status") || "";
const part = task.shadowRoot && task.shadowRoot.querySelector(`[part~="${arguments[1]}"]`);
return part ? part.textContent.trim() : "";
"""


def live(card: WebElement, part: str) -> str:
    """A card's live `status`, `pct`, `phase` or `message`, as its <praxiom-task> shows it."""
    driver = card.parent
    return str(driver.execute_script(_LIVE, card, part))


def _status_colour(card: WebElement) -> str:
    script = (
        "const t = arguments[0].querySelector('praxiom-task');"
        "return getComputedStyle(t.shadowRoot.querySelector('[part~=status]')).color;"
    )
    return str(card.parent.execute_script(script, card))


def _card_ids(driver: WebDriver) -> list[str]:
    cards = driver.find_elements(By.CSS_SELECTOR, "[data-testid=task]")
    return [str(card.get_attribute("data-task-id")) for card in cards]


def _lines(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _wait(
    driver: WebDriver,
    what: str,
    check: Callable[[], Any],
    timeout: float = WAIT_S,
    shows: Callable[[], str] | None = None,
) -> Any:
    """Wait for `check` to return something truthy; fail with `what` (and what `shows`)."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: check())
    except TimeoutException:
        seen = f" (it shows: {shows()})" if shows is not None else ""
        raise AssertionError(f"not within {timeout:g}s: {what}{seen}") from None


def spawn(driver: WebDriver, task_type: str, pace: str, fail_at: str = "") -> WebElement:
    """Spawn from the form; the new task's card."""
    before = set(_card_ids(driver))
    Select(_find(driver, "type")).select_by_value(task_type)
    Select(_find(driver, "pace")).select_by_value(pace)
    Select(_find(driver, "fail-at")).select_by_value(fail_at)
    _find(driver, "spawn").click()

    def new_card() -> WebElement | None:
        for card in driver.find_elements(By.CSS_SELECTOR, "[data-testid=task]"):
            if card.get_attribute("data-task-id") not in before:
                return card
        return None

    return _wait(
        driver,
        f"a card for the new {task_type} appears",
        new_card,
        shows=lambda: _lines(str(_find(driver, "form-error").get_attribute("textContent"))),
    )


def wait_for_status(driver: WebDriver, card: WebElement, status: str) -> None:
    _wait(
        driver,
        f"the card's status reads {status!r}",
        lambda: live(card, "status") == status and card.get_attribute("data-status") == status,
        shows=lambda: _lines(str(card.get_attribute("innerText"))),
    )


def drive_the_page(driver: webdriver.Chrome, url: str, cookie_name: str) -> dict[str, Any]:
    """The user's tour of the page; what it saw, for the async side to check too."""
    driver.get(f"{url}/demo")
    _wait(driver, "the page's script fills the fail-at choices", lambda: _find(driver, "fail-at"))

    cookie = driver.get_cookie(cookie_name)
    assert cookie is not None, f"no {cookie_name} cookie; cookies: {driver.get_cookies()}"
    assert cookie["httpOnly"] is True
    assert cookie.get("sameSite") == "Lax"
    assert cookie["path"] == "/"
    assert cookie_name not in str(driver.execute_script("return document.cookie"))

    types = [o.get_attribute("value") for o in Select(_find(driver, "type")).options]
    assert types == ["validation_kit", "fs_research", "research", "synthesis"]

    # A fast task runs to completion.
    done = spawn(driver, "validation_kit", FAST)
    wait_for_status(driver, done, "completed")
    assert live(done, "pct") == "100%"
    assert live(done, "phase") == "complete"
    assert "Validation Kit is ready" in live(done, "message")
    assert _find(done, "outcome").is_displayed()
    assert "3 documents" in _text(done, "outcome")
    assert not _find(done, "cancel").is_displayed()

    # One told to fail shows its error.
    failed = spawn(driver, "research", FAST, fail_at="reading")
    wait_for_status(driver, failed, "failed")
    assert live(failed, "pct") == "40%"
    assert "Simulated failure at reading" in _text(failed, "outcome")

    # A slow one is cancelled while it runs, keeping its last phase and pct.
    slow = spawn(driver, "validation_kit", SLOW)
    wait_for_status(driver, slow, "running")
    assert live(slow, "pct") == "15%"
    if os.environ.get("DEMO_SCREENSHOT"):
        driver.save_screenshot(os.environ["DEMO_SCREENSHOT"])
    _find(slow, "cancel").click()
    wait_for_status(driver, slow, "cancelled")
    assert live(slow, "pct") == "15%"
    assert live(slow, "phase") == "assumption_map"
    assert _text(slow, "outcome").startswith("Cancelled at 15%")

    # Three distinct looks for the three endings.
    colours = {
        card.get_attribute("data-status"): _status_colour(card) for card in (done, failed, slow)
    }
    assert set(colours) == {"completed", "failed", "cancelled"}
    assert len(set(colours.values())) == 3, colours

    # A reload keeps the session (no new token) and resumes every card from the server.
    ids = _card_ids(driver)
    driver.refresh()
    _wait(driver, "the cards come back after a reload", lambda: _card_ids(driver) == ids)
    again = driver.get_cookie(cookie_name)
    assert again is not None and again["value"] == cookie["value"]
    cards = driver.find_elements(By.CSS_SELECTOR, "[data-testid=task]")
    _wait(
        driver,
        "every card shows its final state again",
        lambda: [live(card, "status") for card in cards] == ["cancelled", "failed", "completed"],
        shows=lambda: str([live(card, "status") for card in cards]),
    )
    assert live(cards[0], "pct") == "15%" and live(cards[2], "pct") == "100%"

    # The workspace's list, built on the list endpoint and the same stream, shows the three
    # (finished ones fade only after half a minute).
    listed = _find(driver, "workspace-tasks")
    _wait(
        driver,
        "the workspace list shows the finished tasks",
        lambda: set(driver.execute_script("return arguments[0].taskIds", listed)) >= set(ids),
        shows=lambda: str(driver.execute_script("return arguments[0].taskIds", listed)),
    )

    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"browser errors: {severe}"
    return {"token": cookie["value"], "tasks": ids}


def _evidence(driver: webdriver.Chrome, where: Path) -> str:
    """A screenshot and the browser console, for a failure message."""
    try:
        driver.save_screenshot(str(where / "demo-failure.png"))
        console = "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except WebDriverException as exc:
        return f"(no evidence: {exc.msg})"
    return f"screenshot: {where / 'demo-failure.png'}\nbrowser console:\n{console or '(empty)'}"


@browser_test
async def test_the_page_completes_a_fast_task_shows_a_failure_and_cancels_a_slow_one(
    demo_gateway: LiveGateway,
    runners: RunnerHarness,
    browser: webdriver.Chrome,
    settings: Settings,
    tmp_path: Path,
) -> None:
    runners.start(builtin_registry())
    started = time.monotonic()
    try:
        seen = await asyncio.to_thread(
            drive_the_page, browser, demo_gateway.url, settings.session_cookie_name
        )
    except AssertionError as exc:
        streams = demo_gateway.app[keys.STREAM_STATS]
        raise AssertionError(f"{exc}\nstreams: {streams}\n{_evidence(browser, tmp_path)}") from exc
    assert time.monotonic() - started < 45

    # The cookie is a demo-workspace token, and progress came over a stream: the page's one
    # workspace stream (one per visit), not one per task.
    principal = await demo_gateway.app[GATEWAY_STORE].principal(hash_token(seen["token"]))
    assert principal is not None and len(principal.workspace_ids) == 1
    assert 1 <= demo_gateway.app[keys.STREAM_STATS].opened <= 2


# -- without a browser ----------------------------------------------------------------------


def _set_cookies(response: Any) -> list[str]:
    return list(response.headers.getall("Set-Cookie", []))


async def test_visiting_signs_in_once_with_an_httponly_lax_cookie(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings, demo=True))
    client.session.cookie_jar.clear()
    name = settings.session_cookie_name

    first = await client.get("/demo", allow_redirects=False)
    assert first.status == 200
    assert first.content_type == "text/html"
    assert first.headers["Cache-Control"] == "no-store"
    (set_cookie,) = _set_cookies(first)
    token = re.match(rf"{name}=([^;]+);", set_cookie)
    assert token is not None, set_cookie
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "Path=/;" in set_cookie + ";" and "SameSite=Lax" in set_cookie
    principal = await client.app[GATEWAY_STORE].principal(hash_token(token.group(1)))
    assert principal is not None
    (workspace_id,) = principal.workspace_ids
    assert str(workspace_id) in await first.text()

    # A valid cookie is reused, on either address of the page.
    client.session.cookie_jar.clear()
    for path in ("/demo", "/"):
        again = await client.get(path, headers={"Cookie": f"{name}={token.group(1)}"})
        assert again.status == 200
        assert _set_cookies(again) == []

    # A stale one is replaced by a fresh demo session.
    client.session.cookie_jar.clear()
    stale = await client.get("/demo", headers={"Cookie": f"{name}=pxp_not-a-real-token"})
    (replaced,) = _set_cookies(stale)
    assert token.group(1) not in replaced

    # The cookie is what authenticates the page's fetch() calls.
    client.session.cookie_jar.clear()
    spawned = await client.post(
        "/api/tasks/spawn",
        json={"task_type": "research", "params": {"step_seconds": 0.2}},
        headers={"Cookie": f"{name}={token.group(1)}"},
    )
    assert spawned.status == 202, await spawned.text()


async def test_the_page_loads_nothing_from_elsewhere(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings, demo=True))
    page = await client.get("/demo")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    html = await page.text()
    assert "<!--" not in html.split("<body>")[0]  # every placeholder filled
    for name, content_type in demo.ASSETS.items():
        asset = await client.get(f"/demo/static/{name}")
        assert asset.status == 200, name
        assert asset.content_type == content_type
    assert (await client.get("/demo/static/index.html")).status == 404
    assert (await client.get("/demo/static/..%2Fdemo.py")).status == 404
    for path in demo.STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|url\(\s*[\"']?https?:", text)
        assert "@import" not in text


def test_the_page_uses_the_browser_component_for_everything_live() -> None:
    page = (demo.STATIC_DIR / "index.html").read_text(encoding="utf-8")
    script = (demo.STATIC_DIR / "demo.js").read_text(encoding="utf-8")
    assert '<script type="module" src="/static/praxiom-progress.js"></script>' in page
    assert "<praxiom-task " in page and "<praxiom-workspace-tasks " in page
    assert "EventSource" not in script, "no stream of the page's own: the elements' only"
    assert 'credentials: "same-origin"' in script
    for event in ("praxiom-progress", "praxiom-done", "praxiom-error"):
        assert f'addEventListener("{event}"' in script


async def test_the_page_offers_the_catalogued_types_and_their_fail_at_choices(
    aiohttp_client: Any, settings: Settings
) -> None:
    """The page names no type itself: the types, their labels and where each can be told to
    fail come from the catalogue (the built-in ones from runner/builtin.py's registration)."""
    client = await aiohttp_client(create_app(settings, demo=True))
    html = await (await client.get("/demo")).text()
    config = json.loads(re.search(r'id="demo-config"[^>]*>(.*?)</script>', html, re.S)[1])
    steps = {
        "validation_kit": builtin.VALIDATION_KIT_STEPS,
        "fs_research": builtin.FS_RESEARCH_STEPS,
        "research": builtin.RESEARCH_STEPS,
        "synthesis": builtin.SYNTHESIS_STEPS,
    }
    assert config["fail_points"] == {name: [s.name for s in st] for name, st in steps.items()}
    assert config["task_types"] == list(builtin_registry())
    assert '<option value="fs_research">FS-Research</option>' in html


async def test_production_serves_no_demo_page(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    for path in ("/", "/demo", "/demo/static/demo.js"):
        response = await client.get(path)
        assert response.status == 404, path
        assert _set_cookies(response) == []
