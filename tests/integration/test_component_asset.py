"""The browser component as the gateway serves it (`/static/praxiom-progress.js`): the file in
the repository, byte for byte, cacheable and revalidated by ETag, loadable from any origin;
and the `package.json` that publishes the same file."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from praxiom_progress.gateway import assets
from praxiom_progress.gateway.app import create_app
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import REPO

PACKAGE = assets.STATIC_DIR / "package.json"


async def test_the_component_is_served_with_caching_headers_from_any_origin(
    api: Any, aiohttp_client: Any, settings: Settings
) -> None:
    response = await api.get("/static/praxiom-progress.js", headers={"Origin": "https://a.example"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert await response.read() == (assets.STATIC_DIR / "praxiom-progress.js").read_bytes()
    assert response.headers["Cache-Control"] == "public, max-age=3600"  # GATEWAY_STATIC_MAX_AGE
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # hence the exact type
    etag = response.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

    # Revalidation: the same ETag is a 304 without a body; another one gets the file.
    again = await api.get("/static/praxiom-progress.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    stale = await api.get("/static/praxiom-progress.js", headers={"If-None-Match": '"old"'})
    assert stale.status == 200

    # GATEWAY_STATIC_MAX_AGE sets how long.
    shorter = await aiohttp_client(create_app(settings.replace(gateway_static_max_age_s=60)))
    again = await shorter.get("/static/praxiom-progress.js")
    assert again.headers["Cache-Control"] == "public, max-age=60"

    # Nothing else under /static, and no demo assets there.
    for path in ("/static/package.json", "/static/demo.js", "/static/../app.py"):
        assert (await api.get(path)).status == 404, path


def test_the_package_publishes_the_served_file_at_the_projects_version() -> None:
    package = json.loads(PACKAGE.read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert package["version"] == project["version"]
    assert package["type"] == "module"
    assert package["exports"] == {".": "./praxiom-progress.js"}
    assert package["files"] == ["praxiom-progress.js"]
    assert not package.get("dependencies") and not package.get("devDependencies")


def test_the_component_is_one_self_contained_module() -> None:
    source = (assets.STATIC_DIR / "praxiom-progress.js").read_text(encoding="utf-8")
    assert not re.search(r"^\s*import\b", source, re.M), "no imports: no build step"
    assert not re.search(r"https?://(?!api\.example\.com)", source), "nothing from elsewhere"
    for name in ("praxiom-task", "praxiom-workspace-tasks"):
        assert f'customElements.define("{name}"' in source
    for event in ("praxiom-progress", "praxiom-done", "praxiom-error"):
        assert f'"{event}"' in source
