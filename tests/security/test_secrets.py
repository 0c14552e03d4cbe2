"""No token in logs, metrics, error bodies or exceptions: every request kind the gateway
answers is made with real tokens (header, cookie, query string), the logs are captured at
DEBUG, and everything is scanned."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from praxiom_progress.taskstate.accounts import AccountStore
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import REPO, LiveGateway, bearer
from tests.log_capture import CapturedLogs, captured_logs
from tests.security.kit import ENDPOINTS, STREAMS, call, cookie, expire, make_scene
from tests.sse_client import events, stream_timeout


@pytest.fixture
def captured() -> Iterator[CapturedLogs]:
    with captured_logs() as logs:
        yield logs


def pieces(token: str) -> list[str]:
    """The token, and every 12-character piece of its secret part."""
    secret = token.removeprefix("pxp_")
    return [token, *(secret[i : i + 12] for i in range(0, len(secret) - 11, 4))]


def assert_no_token(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        for piece in pieces(token):
            assert piece not in text, f"a piece of a token ({piece!r}) is in the {where}"


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[LiveGateway]:
    """Run as production runs it (aiohttp's own access log, which prints query strings, off)."""
    # Hundreds of refused tokens come from this one address: lift its 401 budget, or the
    # later requests would all be 429s and never reach the code that could leak.
    live = LiveGateway(
        settings.replace(
            sse_idle_timeout_s=0.3, spawn_rate_limit=1, auth_failures_per_minute=100_000
        )
    )
    await live.start()
    yield live
    await live.stop()


async def test_no_token_reaches_logs_metrics_or_refusals(
    gateway: LiveGateway, db: Database, task_store: TaskStore, captured: CapturedLogs
) -> None:
    async with aiohttp.ClientSession(base_url=gateway.url, timeout=stream_timeout(10)) as api:
        await exercise(api, db, task_store, captured)


async def exercise(
    api: aiohttp.ClientSession, db: Database, task_store: TaskStore, captured: CapturedLogs
) -> None:
    scene = await make_scene(db, task_store)
    accounts = AccountStore(db)
    expired = await accounts.create_token(workspace="acme", user="ann")
    await expire(db, expired.token)
    revoked = await accounts.create_token(workspace="acme", user="ann")
    await accounts.revoke_token(revoked.token)
    outsider = await accounts.create_token(workspace="beta", user="bob")
    service = await accounts.create_service_token(service="idx", workspaces=["acme"])
    reader = await accounts.create_service_token(service="ro", workspaces=["acme"], read_only=True)
    forged = "pxp_" + "Q" * 43
    tokens = [
        scene.member.token,
        expired.token,
        revoked.token,
        outsider.token,
        service.token,
        reader.token,
        forged,
    ]
    bodies: list[str] = []
    for token in tokens:
        for headers in (
            bearer(token),
            cookie(token),
            {**cookie(token), "Origin": "https://evil.example"},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {token} {token}"},
        ):
            for endpoint in ENDPOINTS:
                resp = await call(api, endpoint, scene.task_id, scene.workspace_id, headers)
                if endpoint in STREAMS and resp.status == 200:
                    resp.close()
                    continue
                bodies.append(await resp.text())
        resp = await api.get(f"/api/tasks/{scene.task_id}/status?access_token={token}")
        bodies.append(await resp.text())

    # A stream that loses its token mid-way, and logs why.
    live = await accounts.create_token(workspace="acme", user="ann")
    tokens.append(live.token)
    other = await task_store.insert_task(
        workspace_id=scene.workspace_id, task_type="validation_kit", params={}
    )
    resp = await api.get(f"/api/tasks/{other.id}/progress", headers=bearer(live.token))
    async for _ in events(resp):
        await accounts.revoke_token(live.token)
    assert "stream_access_lost" in captured.everything()  # the scan below saw that path

    metrics_text = await (await api.get("/metrics")).text()
    assert "praxiom_gateway_spawns_rate_limited_total 0.0" not in metrics_text  # it bit
    assert_no_token(captured.everything(), tokens, "logs")
    assert_no_token(metrics_text, tokens, "metrics")
    assert_no_token("\n".join(bodies), tokens, "response bodies")


def test_the_cli_never_echoes_a_token(database_url: str) -> None:
    """`token revoke` of an unknown token: one error line, without the token."""
    forged = "pxp_" + "Z" * 43
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "praxiom_progress.cli.main", "token", "revoke", forged],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no such token"
    assert_no_token(result.stdout + result.stderr, [forged], "CLI output")
