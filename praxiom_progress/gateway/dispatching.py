"""What the streams and the shared subscription agree on: the `Dispatcher` a stream (or a
test) sees, whether one Redis's (gateway.dispatcher) or a cluster's (gateway.cluster), and
the counters both keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from praxiom_progress.gateway.stream import Watcher


@dataclass
class DispatcherStats:
    messages: int = 0
    delivered: int = 0
    written: int = 0  # of those, written straight to the socket by the dispatcher
    undecodable: int = 0
    mismatched: int = 0  # a payload whose task id is not its channel's: forged, dropped
    coalesced: int = 0  # updates that replaced one a slow stream had not sent yet
    connections: int = 0  # times the subscription came up


class Dispatcher(Protocol):
    """A single-Redis dispatcher or a cluster's (gateway.cluster), as streams and tests see it."""

    @property
    def stats(self) -> DispatcherStats: ...

    @property
    def available(self) -> bool: ...

    @property
    def channel_count(self) -> int: ...

    @property
    def watch_count(self) -> int: ...

    @property
    def subscribed_channels(self) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def watch(self, stream: Watcher) -> None: ...

    def unwatch(self, stream: Watcher) -> None: ...

    def available_for(self, stream: Watcher) -> bool: ...

    def watching(self, channel: str) -> bool: ...

    def offer(self, channel: str, data: bytes) -> None: ...
