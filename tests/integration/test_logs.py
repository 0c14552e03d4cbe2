"""Logs: one JSON access line per request with its request id and principal, never a token;
JSON by default for the service commands; the runner's task ends as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from praxiom_progress.cli.main import log_format_for
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import LiveGateway, RunnerProcess, bearer, spawn, wait_for, wait_for_status
from tests.log_capture import CapturedLogs, captured_logs
from tests.sse_client import events, stream_timeout


@pytest.fixture
def captured() -> Iterator[CapturedLogs]:
    with captured_logs() as logs:
        yield logs


async def test_access_lines_carry_request_id_and_principal_and_never_a_token(
    live_gateway: LiveGateway,
    member: IssuedToken,
    task_store: TaskStore,
    captured: CapturedLogs,
) -> None:
    token = member.token
    forged = "pxp_" + "x" * 40  # a well-formed token nobody issued
    cookie = live_gateway.settings.session_cookie_name
    task_id = await spawn(task_store, member.workspace_id, "validation_kit")
    base = f"{live_gateway.url}/api/tasks/{task_id}"
    calls: list[tuple[str, str, dict[str, str], int]] = [
        ("GET", f"{base}/status", {**bearer(token), "X-Request-ID": "trace-42"}, 200),
        ("GET", f"{base}/status", bearer(forged), 401),
        ("GET", f"{base}/status", {"Cookie": f"{cookie}={token}"}, 200),
        ("GET", f"{base}/status", {"Cookie": f"{cookie}={forged}"}, 401),
        ("GET", f"{base}/status", {"Authorization": f"Bearer {token} extra"}, 401),
        ("GET", f"{base}/status", {"Authorization": f"Basic {token}"}, 401),
        ("GET", f"{base}/status?access_token={token}", {"X-Request-ID": "bad\tid"}, 401),
        ("POST", f"{base}/cancel", bearer(token), 202),
    ]
    answered: list[tuple[int, str]] = []
    async with aiohttp.ClientSession(timeout=stream_timeout()) as session:
        for method, url, headers, status in calls:
            async with session.request(method, url, headers=headers) as response:
                assert response.status == status, (url, headers)
                answered.append((response.status, response.headers["X-Request-ID"]))
        # The stream, with the cookie as a browser sends it: it emits the cancelled state.
        async with session.get(
            f"{base}/progress", headers={"Cookie": f"{cookie}={token}"}
        ) as response:
            assert response.status == 200
            answered.append((200, response.headers["X-Request-ID"]))
            assert [e.payload["status"] async for e in events(response)] == ["cancelled"]

    async def all_logged() -> list[dict[str, Any]] | None:
        lines = captured.access()
        return lines if len(lines) == len(answered) else None

    lines = await wait_for(all_logged, timeout_s=5)
    everything = captured.everything()
    assert token not in everything
    assert forged not in everything
    assert token[4:20] not in everything  # not even a piece of it

    assert [(line["status"], line["request_id"]) for line in lines] == answered
    assert answered[0][1] == "trace-42"  # a sane incoming id is kept ...
    assert answered[6][1] != "bad\tid" and len(answered[6][1]) == 32  # ... a bad one replaced
    assert len({request_id for _, request_id in answered}) == len(answered)
    user = str(member.user_id)
    assert [line.get("principal") for line in lines] == [
        user, None, user, None, None, None, None, user, user,
    ]  # fmt: skip
    for line, (method, _, _, _) in zip(lines, [*calls, ("GET", "", {}, 200)], strict=True):
        assert line["method"] == method
        assert line["path"].startswith(f"/api/tasks/{task_id}/")
        assert "?" not in line["path"]
        assert line["task_id"] == str(task_id)
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["logger"] == "gateway.access" and line["level"] == "INFO"


def test_service_commands_log_json_and_the_rest_text_unless_log_format_says() -> None:
    defaults = Settings()
    assert log_format_for("gateway", defaults) == "json"
    assert log_format_for("runner", defaults) == "json"
    assert log_format_for("dev", defaults) == "text"
    assert log_format_for("migrate", defaults) == "text"
    assert log_format_for("gateway", Settings.from_env({"LOG_FORMAT": "text"})) == "text"
    assert log_format_for("dev", Settings.from_env({"LOG_FORMAT": "JSON"})) == "json"


async def test_a_runner_process_logs_json_lines_with_each_task_s_end(
    task_store: TaskStore,
    workspace_id: UUID,
    runner_processes: Callable[..., RunnerProcess],
) -> None:
    runner = runner_processes()
    task_id = await spawn(task_store, workspace_id, "validation_kit", step_seconds=0.05)
    await wait_for_status(task_store, task_id, {"completed"})

    def ended() -> list[dict[str, Any]]:
        records = [json.loads(line) for line in runner.log().splitlines()]
        return [r for r in records if r.get("action") == "completed"]

    async def check() -> list[dict[str, Any]]:
        return ended()

    (line,) = await wait_for(check, timeout_s=5)
    assert line["task_id"] == str(task_id)
    assert line["status"] == "completed"
    assert 0 < line["duration_ms"] < 10_000
    assert line["logger"] == "runner"
