"""`GET /static/praxiom-progress.js`: the browser component, for pages on any origin.

The file (`gateway/static/`, beside the `package.json` that publishes it) is read once at
start; browsers may keep it `STATIC_MAX_AGE_S` and then revalidate with its ETag (a 304 costs
no body). It is public code, so any origin may load it as a module (`*`, no credentials).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")
COMPONENT = "praxiom-progress.js"
PATH = f"/static/{COMPONENT}"
#: An hour: a gateway upgrade reaches every page within it (the URL carries no version).
STATIC_MAX_AGE_S = 3600


@dataclass(frozen=True)
class StaticFile:
    """One file served from memory, with its validator."""

    body: bytes
    content_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    @classmethod
    def read(cls, path: Path, content_type: str) -> StaticFile:
        return cls(path.read_bytes(), content_type)

    async def serve(self, request: web.Request) -> web.Response:
        headers = {
            "Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}",
            "ETag": self.etag,
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        wanted = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        if self.etag in wanted or "*" in wanted:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers, "Content-Type": self.content_type})


def setup(app: web.Application) -> None:
    component = StaticFile.read(STATIC_DIR / COMPONENT, "text/javascript; charset=utf-8")
    app.router.add_get(PATH, component.serve)
