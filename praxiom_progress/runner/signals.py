"""SIGTERM and SIGINT stop the runner gracefully; a second one skips the grace."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("runner")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: Callable[..., None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    received = 0

    def handle(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        force = received > 1
        log.info(
            "%s received: %s",
            sig.name,
            "stopping now" if force else "finishing running tasks, then stopping",
            extra={"action": "signal"},
        )
        stop(force=force)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
