"""Opt-in retries (`register(..., retries=N, retry_backoff_s=B)`): whether a failed attempt runs
again, when, and what the task says meanwhile.

The wait before retry k (k = 1, 2, …) is B·2^(k-1), jittered by ±`JITTER` so tasks that failed
together (a database restart) do not all come back in the same instant, and never more than
`MAX_RETRY_DELAY_S`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: The longest wait before a retry, however many attempts came before.
MAX_RETRY_DELAY_S = 3600.0
#: Each wait is its nominal value times a factor drawn from [1 - JITTER, 1 + JITTER].
JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    message: str  # the pending task's message: "Retrying in 20s (attempt 2 of 3): …"


class RetryPolicy:
    def __init__(
        self, rng: random.Random | None = None, *, max_delay_s: float = MAX_RETRY_DELAY_S
    ) -> None:
        """`rng` for tests that want the jitter fixed."""
        self._rng = rng or random.Random()
        self._max_delay_s = max_delay_s

    def delay_s(self, first_s: float, failed_attempt: int) -> float:
        """The wait after attempt `failed_attempt` (1-based) failed."""
        nominal = first_s * 2.0 ** min(failed_attempt - 1, 60)
        return min(self._max_delay_s, nominal * self._rng.uniform(1 - JITTER, 1 + JITTER))

    def after(
        self, *, first_s: float, failed_attempt: int, max_attempts: int, error: str
    ) -> Retry | None:
        """The retry after attempt `failed_attempt` failed with `error`; None when it was the
        last one."""
        if failed_attempt >= max_attempts:
            return None
        delay = self.delay_s(first_s, failed_attempt)
        message = (
            f"Retrying in {_duration(delay)} (attempt {failed_attempt + 1} of {max_attempts}):"
            f" {error}"
        )
        return Retry(delay, message)


def _duration(seconds: float) -> str:
    """`20s`, `1.5s`, `0.05s`: whole seconds once they are what a reader cares about."""
    if seconds >= 10:
        return f"{seconds:.0f}s"
    return f"{seconds:.2g}s"
