"""The gateway's limits per process: open streams per principal and in all, spawns per minute,
401s per client address.

Counted in memory, so each limit holds per gateway process: behind a load balancer with N
gateways a principal may hold up to N times `STREAMS_PER_PRINCIPAL` streams. That is the
point of the total cap's 503: a full gateway sends the client to another one. Every time a
limit bites it is counted in `LimitStats`, which `/metrics` reads at scrape time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from praxiom_progress.gateway.errors import ApiError, too_many
from praxiom_progress.gateway.keys import (
    AUTH_FAILURE_LIMITER,
    LIMIT_STATS,
    SPAWN_LIMITER,
    STREAM_SLOTS,
)
from praxiom_progress.taskstate.settings import Settings

#: What a refused stream is told to wait: long enough for streams to end, short for a browser.
STREAM_RETRY_AFTER_S = 5
#: Buckets kept before full (idle) ones are forgotten, so memory stays bounded.
_MAX_BUCKETS = 10_000


@dataclass
class LimitStats:
    streams_refused_principal: int = 0  # 429: STREAMS_PER_PRINCIPAL
    streams_refused_full: int = 0  # 503: GATEWAY_MAX_STREAMS
    spawns_rate_limited: int = 0  # 429: SPAWN_RATE_LIMIT
    bodies_too_large: int = 0  # 413: GATEWAY_MAX_BODY_BYTES
    cross_origin_refused: int = 0  # 403: a cookie POST from an origin not allowed
    streams_access_lost: int = 0  # streams ended because the caller lost access mid-stream
    auth_failures_limited: int = 0  # 429: AUTH_FAILURES_PER_MINUTE from one client address

    def count_spawn_limited(self) -> None:
        self.spawns_rate_limited += 1

    def count_auth_limited(self) -> None:
        self.auth_failures_limited += 1


class StreamSlots:
    """Open streams per principal and in all, in this process."""

    def __init__(self, per_principal: int, total: int, stats: LimitStats) -> None:
        self.per_principal = per_principal
        self.total = total
        self.stats = stats
        self._open: dict[str, int] = {}
        self._total_open = 0

    def hold(self, principal: str) -> HeldSlot:
        """A slot for one stream of `principal` (`with` it, or `release` it); 503 when the
        process is full, else 429 when the principal holds its share. (An object, not a
        generator: it lives as long as the stream, and memory per stream counts.)"""
        if self._total_open >= self.total:
            self.stats.streams_refused_full += 1
            raise ApiError(
                503,
                "UNAVAILABLE",
                "This gateway holds all the streams it may; retry (elsewhere) shortly",
                headers={"Retry-After": str(STREAM_RETRY_AFTER_S)},
            )
        held = self._open.get(principal, 0)
        if held >= self.per_principal:
            self.stats.streams_refused_principal += 1
            raise too_many(
                f"At most {self.per_principal} open streams per caller", STREAM_RETRY_AFTER_S
            )
        self._open[principal] = held + 1
        self._total_open += 1
        return HeldSlot(self, principal)

    def release(self, principal: str) -> None:
        self._total_open -= 1
        left = self._open[principal] - 1
        if left:
            self._open[principal] = left
        else:
            del self._open[principal]


class RateLimiter:
    """A token bucket per key (a principal, a client address): `per_minute` at once,
    refilled evenly over a minute."""

    def __init__(
        self,
        per_minute: int,
        refusal: str,
        on_refused: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate_per_s = per_minute / 60.0
        self._refusal = refusal
        self._on_refused = on_refused
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> None:
        """Spend one of `key`'s; 429 with Retry-After when none is left."""
        self.check(key)
        self.spend(key)

    def check(self, key: str) -> None:
        """429 with Retry-After when `key` has nothing left; spends nothing."""
        tokens = self._tokens(key, self._clock())
        if tokens < 1.0:
            self._on_refused()
            wait_s = max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
            raise too_many(self._refusal, wait_s)

    def spend(self, key: str) -> None:
        now = self._clock()
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._forget_full(now)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate_per_s)

    def _forget_full(self, now: float) -> None:
        for key in list(self._buckets):
            if self._tokens(key, now) >= self.capacity:
                del self._buckets[key]


async def _count_too_large(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: a 413 is aiohttp's body limit biting."""
    if response.status == 413:
        request.app[LIMIT_STATS].bodies_too_large += 1


def setup(app: web.Application, settings: Settings) -> None:
    stats = LimitStats()
    app[LIMIT_STATS] = stats
    app[STREAM_SLOTS] = StreamSlots(
        settings.streams_per_principal, settings.gateway_max_streams, stats
    )
    app[SPAWN_LIMITER] = RateLimiter(
        settings.spawn_rate_limit,
        f"At most {settings.spawn_rate_limit} spawns a minute per caller",
        stats.count_spawn_limited,
    )
    app[AUTH_FAILURE_LIMITER] = RateLimiter(
        settings.auth_failures_per_minute,
        "Too many requests without a valid token from this address",
        stats.count_auth_limited,
    )
    app.on_response_prepare.append(_count_too_large)


class HeldSlot:
    __slots__ = ("_principal", "_slots")

    def __init__(self, slots: StreamSlots, principal: str) -> None:
        self._slots = slots
        self._principal = principal

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        self._slots.release(self._principal)
