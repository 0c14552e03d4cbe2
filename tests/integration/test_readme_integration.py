"""The README's "Integrate with your application" section, run as written, and type-checked
with `mypy --strict` together with a small application (`tests/app/acme`) that uses the rest
of the public API and the client, under the application's own mypy configuration.

The section's Python blocks are written to the files their first line names, in a directory
the project has never seen, and imported from there: the order handler runs in an aiohttp
app of its own on an aiopg pool, the follower watches the task through a real gateway, the
refund runs on a psycopg2 connection; a real runner serves the README's `export_csv`.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import aiopg
import psycopg2
import pytest
from aiohttp import web

from praxiom_progress import HandlerRegistry
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore
from tests.conftest import REPO, LiveGateway, RunnerHarness, wait_for, wait_for_status
from tests.integration.test_readme import readme_blocks, write_module

SECTION = "## Integrate with your application"
TASK_TYPE_SECTION = "## Add your own task type"
APP = REPO / "tests" / "app"
ORDERS_TABLE = (
    "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL,"
    " quantity integer NOT NULL, refunded boolean NOT NULL DEFAULT false);"
    " TRUNCATE orders"
)
#: A mistake of each kind the type checker must catch in an application.
MISTAKES = """
from typing import Any

import praxiom_progress
from praxiom_client import TaskPayload


async def mistakes(conn: Any) -> int:
    payload: TaskPayload = await praxiom_progress.spawn(conn, "export_csv")
    praxiom_progress.spawn_sync(conn, "export_csv", workspace_id="w", params=[1])
    praxiom_progress.spawn_later(conn)
    return payload["nope"]
"""


def _write_section(heading: str, root: Path) -> list[str]:
    """The section's Python blocks, written under `root`; the modules' dotted names."""
    names = []
    for block in readme_blocks(heading):
        if block.language == "python":
            write_module(block, root)
            first = block.text.partition("\n")[0]
            names.append(first[2:].strip().removesuffix(".py").replace("/", "."))
    return names


def _mypy(root: Path, *targets: str) -> tuple[int, str]:
    """mypy as an application runs it: from its own directory, with its own mypy.ini."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(root / ".mypy_cache"), *targets],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def write_application(root: Path) -> None:
    """The small application (`acme`), the section's blocks (`shop`) and their mypy.ini."""
    shutil.copytree(APP / "acme", root / "acme")
    shutil.copy(APP / "mypy.ini", root / "mypy.ini")
    written = _write_section(SECTION, root)
    assert written == ["shop.orders", "shop.follow", "shop.refunds"]


def test_the_section_and_a_small_application_pass_mypy_strict(tmp_path: Path) -> None:
    write_application(tmp_path)
    code, output = _mypy(tmp_path, "acme", "shop")
    assert code == 0, output
    assert "Success: no issues found in 8 source files" in output, output

    (tmp_path / "shop" / "mistakes.py").write_text(MISTAKES, encoding="utf-8")
    code, output = _mypy(tmp_path, "shop")
    assert code == 1, output
    assert 'Missing named argument "workspace_id" for "spawn"' in output
    assert 'Argument "params" to "spawn_sync" has incompatible type "list[int]"' in output
    assert 'TypedDict "TaskPayload" has no key "nope"' in output
    assert 'Module has no attribute "spawn_later"' in output  # names load lazily, typos fail


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    """The section's modules (and the task type section's `myapp.export`), imported from a
    directory of their own, and forgotten afterwards."""
    names = _write_section(SECTION, tmp_path) + _write_section(TASK_TYPE_SECTION, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield {name.rpartition(".")[2]: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(tmp_path))
        for name in [*names, "shop", "myapp"]:
            sys.modules.pop(name, None)


async def _catalogued(db: Database, task_type: str) -> bool:
    rows = await db.fetch_all("SELECT 1 FROM task_types WHERE name = %(n)s", {"n": task_type})
    return bool(rows)


def _sql(settings: Settings, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(settings.database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _refund(refunds: ModuleType, settings: Settings, order_id: int, task_id: str) -> None:
    conn = psycopg2.connect(settings.database_url)
    try:
        refunds.refund(conn, order_id, task_id)
    finally:
        conn.close()


async def test_the_section_runs_as_written(
    shop: dict[str, ModuleType],
    settings: Settings,
    live_gateway: LiveGateway,
    member: IssuedToken,
    workspace_id: UUID,
    runners: RunnerHarness,
    db: Database,
    task_store: TaskStore,
    aiohttp_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orders, follow, refunds = shop["orders"], shop["follow"], shop["refunds"]
    _sql(settings, ORDERS_TABLE)
    registry = HandlerRegistry()
    shop["export"].register(registry)
    runners.start(registry)
    await wait_for(lambda: _catalogued(db, "export_csv"), 20)

    app = web.Application()
    app[orders.POOL] = pool = await aiopg.create_pool(settings.database_url)
    app[orders.WORKSPACE_ID] = str(workspace_id)
    app.router.add_post("/orders", orders.place_order)
    client = await aiohttp_client(app)
    try:
        placed = await client.post("/orders", json={"item": "widgets", "quantity": 2000})
        assert placed.status == 201
        body = await placed.json()
        end = await follow.follow(live_gateway.url, member.token, body["task_id"])
        assert end["status"] == "completed"
        assert end["result_data"]["rows"] == 2000
        printed = capsys.readouterr().out.splitlines()
        assert printed[-1] == "100% complete: Exported 2000 rows."
        task = await task_store.get_task(UUID(body["task_id"]))
        assert task is not None and task.spawned_by == f"order:{body['order_id']}"

        refused = await client.post("/orders", json={"item": "gadgets", "quantity": 0})
        assert refused.status == 422
        assert list((await refused.json())["fields"]) == ["params.rows"]
        assert _sql(settings, "SELECT id FROM orders WHERE item = 'gadgets'") == []

        # A finished export: the refund stands, the task stays completed.
        _refund(refunds, settings, body["order_id"], end["id"])
        refunded = _sql(settings, "SELECT refunded FROM orders WHERE id = %s", (body["order_id"],))
        assert refunded == [(True,)]

        # With no runner, the export waits: the refund cancels it in the same transaction.
        await runners.stop_all()
        pending = await (await client.post("/orders", json={"item": "bolts", "quantity": 5})).json()
        _refund(refunds, settings, pending["order_id"], pending["task_id"])
        cancelled = await wait_for_status(task_store, UUID(pending["task_id"]), {"cancelled"})
        assert cancelled.status == "cancelled"
    finally:
        pool.close()
        await pool.wait_closed()
