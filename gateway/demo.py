"""The demo page (dev mode only): not built yet."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the demo routes to `app`."""
