"""`GET /static/praxiom-progress.js`: the browser component, for pages on any origin.

The file (`gateway/static/`, beside the `package.json` that publishes it) is read once at
start; browsers may keep it GATEWAY_STATIC_MAX_AGE seconds (the URL carries no version: a
gateway upgrade reaches every page within that time) and then revalidate it with its ETag (a
304 costs no body). It is public code, so any origin may load it as a module (`*`, no
credentials).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from praxiom_progress.taskstate.settings import Settings

STATIC_DIR = Path(__file__).with_name("static")
COMPONENT = "praxiom-progress.js"
PATH = f"/static/{COMPONENT}"


@dataclass(frozen=True)
class StaticFile:
    """One file served from memory, with its validator."""

    body: bytes
    content_type: str
    max_age_s: int

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    @classmethod
    def read(cls, path: Path, content_type: str, max_age_s: int) -> StaticFile:
        return cls(path.read_bytes(), content_type, max_age_s)

    async def serve(self, request: web.Request) -> web.Response:
        headers = {
            "Cache-Control": f"public, max-age={self.max_age_s}",
            "ETag": self.etag,
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        wanted = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        if self.etag in wanted or "*" in wanted:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers, "Content-Type": self.content_type})


def setup(app: web.Application, settings: Settings) -> None:
    component = StaticFile.read(
        STATIC_DIR / COMPONENT, "text/javascript; charset=utf-8", settings.gateway_static_max_age_s
    )
    app.router.add_get(PATH, component.serve)
