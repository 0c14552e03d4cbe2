"""SSE_DIRECT_WRITE: whether a stream may write its updates straight to its socket.

The fast path (`ProgressStream.deliver`) writes a pre-encoded `Update.chunk` with
`transport.write`, past aiohttp's `StreamResponse`: the dispatcher serves every stream of a
task in one pass, without waking a task per stream. That framing is built by hand, so it is
right only for a plain chunked HTTP/1.1 body. A compressed body, or one sent without chunked
framing (an HTTP/1.0 peer: aiohttp-sse still reports `response.chunked` then), would be
corrupted silently; such a stream is refused loudly and every write of it goes through
`StreamResponse.write`, as every stream's does with SSE_DIRECT_WRITE=0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from aiohttp import hdrs, web

log = logging.getLogger("gateway.direct_write")

#: At most one ERROR line per this long; the lines between are counted in the next one.
LOG_EVERY_S = 60.0


def refusal(response: web.StreamResponse) -> str | None:
    """Why chunks may not go straight to this prepared response's socket; None if they may."""
    encoding = response.headers.get(hdrs.CONTENT_ENCODING)
    if response.compression or encoding:
        return f"the response is compressed (Content-Encoding: {encoding})"
    if response.headers.get(hdrs.TRANSFER_ENCODING, "").lower() != "chunked":
        return "the response is not chunked (an HTTP/1.0 peer?)"
    return None


class DirectWrite:
    """The switch and its guard, one per app."""

    def __init__(
        self,
        enabled: bool,
        *,
        log_every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.refused = 0  # streams the guard sent down the slow path
        self._log_every_s = log_every_s
        self._clock = clock
        self._logged_at = -math.inf
        self._unlogged = 0

    def transport_for(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> asyncio.Transport | None:
        """The socket a prepared stream may write chunks to; None: every write of it goes
        through `response.write`."""
        if not self.enabled:
            return None
        reason = refusal(response)
        if reason is None:
            return request.transport
        self.refused += 1
        now = self._clock()
        if now - self._logged_at < self._log_every_s:
            self._unlogged += 1
            return None
        log.error(
            "direct socket writes refused for a stream of %s: %s; it is written through "
            "StreamResponse.write (%d more refused since the last such line)",
            request.path,
            reason,
            self._unlogged,
            extra={"action": "direct_write_refused", "reason": reason},
        )
        self._logged_at, self._unlogged = now, 0
        return None
