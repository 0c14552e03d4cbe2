"""When to try again: one bounded backoff for a dropped stream and for a gateway that answers
503 (unavailable) or 429 (too many requests), the latter never sooner than its `Retry-After`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: Answers that say "not now" rather than "no": retried on every call, first connections too.
BUSY_STATUSES = frozenset({429, 503})

OnRetry = Callable[[int, float, str], None]  # (failures so far, delay, reason)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: `first_delay_s`, doubling, capped at `max_delay_s`, each
    shortened by up to `jitter` (a fraction) at random; give up after `max_failures`
    consecutive attempts that brought nothing. A `Retry-After` is waited out in full, unless
    it asks for more than `max_retry_after_s`: then the call fails at once instead."""

    first_delay_s: float = 0.5
    max_delay_s: float = 5.0
    max_failures: int = 10
    jitter: float = 0.0
    max_retry_after_s: float = 60.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before the next attempt, after `failures` failed attempts in a row."""
        base = min(self.first_delay_s * 2.0 ** min(failures, 32), self.max_delay_s)
        return base * (1 - self.jitter * rand()) if self.jitter else base

    def retry_delay(
        self,
        failures: int,
        retry_after_s: float | None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """The wait before the next attempt, or None to give up: after `max_failures`
        failures, or when the server asked for longer than `max_retry_after_s`."""
        if failures >= self.max_failures:
            return None
        if retry_after_s is None:
            return self.delay(failures, rand)
        if retry_after_s > self.max_retry_after_s:
            return None
        return max(self.delay(failures, rand), retry_after_s)


#: What `Client` and `watch_task` use: up to half of each wait taken off at random, so a fleet
#: of clients does not come back in lockstep.
DEFAULT_POLICY = RetryPolicy(jitter=0.5)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header in seconds (delta-seconds or an HTTP date); None when absent or
    not understood (the backoff alone applies then)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
