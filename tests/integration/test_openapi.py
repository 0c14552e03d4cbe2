"""The OpenAPI document, against the gateway served as in production: schemathesis generates
hundreds of requests per operation (valid and invalid ones, with a valid token) and checks every
answer against the document: no 5xx, only documented statuses, content types, headers and
bodies.

Generated task ids never exist, so they get 404; to reach the other answers too, about half of
the valid ids are swapped for known tasks: a cancelled one of the caller's (200, a stream that
ends at once, 204 with a high `Last-Event-ID`, 409 on cancel) and one of another workspace
(403). No generated id points at a live task, whose stream would never end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from praxiom_progress.gateway import openapi
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import (
    REPO,
    TABLES,
    bearer,
    builtin_task_types,
    free_port,
    record_builtin_catalogue,
    redis_url,
)

#: What the served gateway's catalogue holds (tests/conftest.py records them).
BUILTIN_TYPES = builtin_task_types()
#: Examples per operation: "a few hundred generated requests per endpoint".
EXAMPLES = 300
#: Operations whose inputs are so few that schemathesis runs out of distinct requests first.
FEW_INPUTS = {"GET /healthz", "GET /readyz", f"GET {openapi.PATH}"}


@dataclass
class ServedGateway:
    url: str
    token: str
    own_terminal_task: str
    foreign_task: str
    requests_per_operation: Counter[str] = field(default_factory=Counter)


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "praxiom_progress.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _token(env: dict[str, str], workspace: str, user: str) -> str:
    out = _cli(env, "token", "create", "--workspace", workspace, "--user", user, "--json")
    return str(json.loads(out)["token"])


def _wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway did not serve within 30s:\n{log.read_text()}")
        time.sleep(0.1)


def _spawn(url: str, token: str) -> str:
    response = requests.post(
        f"{url}/api/tasks/spawn",
        json={"task_type": "research", "params": {}},
        headers=bearer(token),
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    """`praxiom-progress gateway` in a process of its own, as production runs it."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} CASCADE")
        record_builtin_catalogue(cur)
    conn.close()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url(),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
        # Hundreds of generated spawns from one token: past the rate limit they would all be
        # 429s, and the spawn endpoint's other answers would go untested.
        "SPAWN_RATE_LIMIT": "100000",
        # Likewise the generated bad tokens, all from this one address.
        "AUTH_FAILURES_PER_MINUTE": "100000",
    }
    token = _token(env, "acme", "ann")
    other = _token(env, "globex", "bob")
    log = tmp_path_factory.mktemp("openapi") / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "praxiom_progress.cli.main", "gateway"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, proc, log)
        own = _spawn(url, token)
        cancel_url = f"{url}/api/tasks/{own}/cancel"
        cancelled = requests.post(cancel_url, headers=bearer(token), timeout=10)
        assert cancelled.status_code == 202, cancelled.text
        gateway = ServedGateway(url, token, own, _spawn(url, other))
        yield gateway
        counts = gateway.requests_per_operation
        print(f"requests per operation: {dict(counts)}")
        documented = {
            f"{method.upper()} {path}"
            for path, operations in openapi.build(Settings(), BUILTIN_TYPES)["paths"].items()
            for method in operations
        }
        few = {
            name: count
            for name, count in counts.items()
            if name in documented and name not in FEW_INPUTS and count < EXAMPLES * 0.8
        }
        assert not few, f"too few generated requests: {few}"
        problems = [line for line in log.read_text().splitlines() if "Traceback" in line]
        assert not problems, f"the gateway logged errors:\n{log.read_text()}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _swap_task_id(case: Any, served: ServedGateway) -> None:
    """Swap about half of the valid task ids for known tasks (the rest stay unknown: 404)."""
    raw = (case.path_parameters or {}).get("task_id")
    try:
        generated = UUID(str(raw))
    except ValueError:
        return  # an invalid id, kept: it must get 404 too
    choice = generated.int % 4
    if choice == 0:
        case.path_parameters["task_id"] = served.own_terminal_task
    elif choice == 1:
        case.path_parameters["task_id"] = served.foreign_task


# The document the gateway serves, built by the same function for the same settings (the
# served one is checked to be identical). schemathesis's lazy `from_fixture` loader does not
# work on pytest 9 (it sets `Function._nodeid`, which no longer exists).
schema = schemathesis.openapi.from_dict(openapi.build(Settings(), BUILTIN_TYPES))


def test_the_gateway_serves_the_document_without_auth(served: ServedGateway) -> None:
    response = requests.get(served.url + openapi.PATH, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document == openapi.build(Settings(), BUILTIN_TYPES)
    assert document["openapi"] == "3.1.0"


def test_the_spawn_path_read_as_a_task_id_gets_its_documented_405(served: ServedGateway) -> None:
    """`GET /api/tasks/spawn` is a record read on the id `spawn` by its path, and the spawn
    endpoint's by its resource: it answers 405, which the document says (Hypothesis once drew
    that id from the document's own strings, and found it missing)."""
    case = schema["/api/tasks/{task_id}"]["GET"].Case(path_parameters={"task_id": "spawn"})
    response = case.call_and_validate(base_url=served.url, headers=bearer(served.token), timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_openapi_document(case: Any, served: ServedGateway) -> None:
    served.requests_per_operation[f"{case.method} {case.path}"] += 1
    _swap_task_id(case, served)
    case.call_and_validate(base_url=served.url, headers=bearer(served.token), timeout=10)
