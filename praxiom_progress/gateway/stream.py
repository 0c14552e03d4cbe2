"""One open stream's state, owned by one object: `ProgressStream`.

Three actors reach an open stream, each through methods named for what it wants: the
dispatcher hands it every published update (`deliver`) and wakes it when Redis comes or goes
(`wake`); the idle sweeper re-checks its caller and re-emits a quiet stream's row
(`overdue_since`, `note_checked`, `reemit`, `close`); its own task sends what the others
cannot and polls while Redis is down (`run`, with `wait` and `take`). No other module sets
its fields, so its rules hold here alone: a version never goes down, a slow client gets the
newest state, the terminal one is never dropped.

Memory per stream counts (ten thousand idle streams are benchmarked): one object with slots,
a waiting stream is one coroutine parked on a plain future, and it holds no timer.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.access import StreamAccess
from praxiom_progress.gateway.frames import Update, snapshot
from praxiom_progress.gateway.lag import LagHistogram
from praxiom_progress.gateway.wakeup import Wakeable
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.settings import Settings


@dataclass
class StreamStats:
    opened: int = 0
    closed: int = 0
    events: int = 0
    idle_reemits: int = 0
    polls: int = 0
    poll_limit_closes: int = 0
    suspect_jumps: int = 0  # messages too far ahead, checked against PostgreSQL instead
    foreign_tasks: int = 0  # on a workspace's channel, a task not of that workspace: dropped
    lag: LagHistogram = field(default_factory=LagHistogram)  # sampled publish-to-send lag

    @property
    def open(self) -> int:
        return self.opened - self.closed


class Watcher(Protocol):
    """What the dispatcher holds for a channel: a task's stream (here) or a workspace's
    (gateway.workspace). `deliver` answers 1 (written at once), 0 (queued, or stale) or -1
    (it replaced an update not sent yet)."""

    channel: str

    def deliver(self, update: Update, now: float) -> int: ...

    def wake(self) -> None: ...


class Subscription(Protocol):
    """What a stream asks of the dispatcher (gateway.dispatcher): is pub/sub up for it?"""

    def available_for(self, stream: Watcher) -> bool: ...


class ProgressStream(Wakeable):
    """One open stream of one task.

    While it is live (pub/sub up, its task parked in `wait`), an update that its socket can
    take at once is written by `deliver` itself, straight from the dispatcher, in the same
    pass as every other stream of the task: no task is woken and nothing is queued. Anything
    else goes to the mailbox (the newest state only: every payload is a full state) and
    wakes the stream's task: a terminal state (the stream ends after it), an update for a
    socket still sending earlier ones (a slow client, which then skips intermediate
    states), and every update when direct writes are off (gateway.direct_write).
    """

    __slots__ = (
        "__weakref__",
        "_access",
        "_again",
        "_checked_at",
        "_closing",
        "_held",
        "_last_activity",
        "_latest",
        "_live",
        "_sent_version",
        "_settings",
        "_stats",
        "_suspect",
        "_transport",
        "channel",
        "digest",
        "task_id",
    )  # fmt: skip

    def __init__(
        self,
        task_id: UUID,
        digest: bytes,
        access: StreamAccess,
        settings: Settings,
        stats: StreamStats,
    ) -> None:
        super().__init__()
        self.task_id = task_id
        self.channel = progress_channel(task_id)
        # Security: every re-read re-checks the caller's token digest (gateway.access), in
        # this stream's own polls and in the idle sweeper's batch.
        self.digest = digest
        self._access = access
        self._settings = settings
        self._stats = stats
        self._latest: Update | None = None  # the mailbox: the newest update not sent yet
        self._again = False  # the mailbox holds an idle re-read, due even at the version sent
        self._sent_version = 0
        self._transport: asyncio.Transport | None = None  # set while `deliver` may write
        self._live = False  # in pub/sub mode: the idle sweeper looks after it
        self._closing = False
        self._last_activity = 0.0  # loop time of the last update delivered (idle detection)
        # When its caller's access was last checked (at open; then by the idle sweeper, every
        # SSE_IDLE_TIMEOUT, busy or quiet).
        self._checked_at = time.monotonic()
        self._suspect = False  # a message jumped SSE_MAX_VERSION_JUMP ahead: re-read first
        self._held = False  # access changed somewhere: send nothing until re-checked

    # -- the dispatcher's ------------------------------------------------------------------

    def deliver(self, update: Update, now: float, *, again: bool = False) -> int:
        """Hand the stream `update` if it is newer than what it has (with `again`, which only
        `reemit` passes: the same state re-read while idle). 1: written to the socket;
        0: left in the mailbox, or stale; -1: it replaced an update not sent yet (coalesced).

        The hot path: the dispatcher calls it for every stream of a task in one pass."""
        latest = self._latest
        newest = latest.version if latest is not None else self._sent_version
        if update.version < newest or (update.version == newest and not again):
            return 0
        self._last_activity = now
        if self._held:  # kept for after its caller's re-check; not sent, nobody woken
            self._latest, self._again = update, again
            return 0 if latest is None else -1
        if update.version - self._sent_version > self._settings.sse_max_version_jump:
            self._suspect = True  # checked against PostgreSQL by the stream's task first
            self.wake()
            return 0
        transport = self._transport
        if (
            transport is not None
            and latest is None
            and not update.terminal
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            transport.write(update.chunk)  # the one direct write (see gateway.direct_write)
            self._sent_version = update.version
            return 1
        self._latest, self._again = update, again
        self.wake()
        return 0 if latest is None else -1

    # -- the idle sweeper's ----------------------------------------------------------------

    @property
    def overdue_since(self) -> float:
        """The older of its last update and its caller's last check; infinity while the
        sweeper has nothing to do for it (polling re-checks by itself, or closing)."""
        if not self._live or self._closing:
            return math.inf
        return min(self._last_activity, self._checked_at)

    def quiet_since(self, cutoff: float) -> bool:
        """No update came since `cutoff`: its re-check will re-emit its row."""
        return self._last_activity <= cutoff

    def note_checked(self, now: float, quiet_since: float) -> bool:
        """The sweeper re-checks its caller as of `now`. True when no update came since
        `quiet_since` either: a re-emit is due, and due again one timeout from now, whether
        this one's read succeeds or not."""
        self._checked_at = now
        if self._last_activity > quiet_since:
            return False
        self._last_activity = now
        return True

    def hold(self) -> None:
        """Send nothing until `release`: some caller's access was taken away, and this
        stream's is being re-checked."""
        self._held = True

    def release(self) -> None:
        """Its caller may still see the task: send what arrived meanwhile."""
        self._held = False
        if self._latest is not None:
            self.wake()

    def reemit(self, update: Update, now: float) -> bool:
        """The idle re-read, sent even at the version already sent; True when it was
        written at once (else the stream's task sends it)."""
        return self.deliver(update, now, again=True) > 0

    def close(self) -> None:
        """End the stream soon and cleanly (shutdown, or its caller lost access); the
        client reconnects."""
        self._closing = True
        self.wake()

    # -- its own task's --------------------------------------------------------------------

    async def run(
        self,
        first: Update,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
        dispatcher: Subscription,
    ) -> None:
        """Send `first`, then follow the task to its end (one coroutine: a frame per stream).
        `transport`: where `deliver` may write chunks, or None (gateway.direct_write)."""
        try:
            if await self._send(first, response):
                return
            del first  # an open stream keeps nothing it does not need: memory per stream counts
            self._last_activity = time.monotonic()
            polls = 0
            polling = False
            while not self._closing:
                if dispatcher.available_for(self):
                    if polling:  # back from polling: anything published meanwhile was lost
                        polling, polls = False, 0
                        if await self._reread(response):
                            return
                        continue
                    # The first write sent the headers, so chunks may follow them directly.
                    self._transport, self._live = transport, True
                    await self.wait(None)
                    if self._held:
                        continue  # `release` wakes it again
                    if self._suspect:  # too far ahead to trust: PostgreSQL says what is true
                        self._suspect = False
                        self._stats.suspect_jumps += 1
                        if await self._reread(response):
                            return
                        continue
                    update = self.take()
                    if update is not None and await self._send(update, response):
                        return
                else:
                    self._transport, self._live = None, False
                    polling = True
                    if polls >= self._settings.sse_poll_limit:
                        self._stats.poll_limit_closes += 1
                        return
                    await self.wait(self._settings.sse_poll_interval_s)
                    if self._closing or dispatcher.available_for(self):
                        continue
                    polls += 1
                    self._stats.polls += 1
                    if await self._reread(response):
                        return
        finally:
            self._transport, self._live = None, False

    def take(self) -> Update | None:
        """The mailbox's update, unless the stream has sent that state meanwhile."""
        update, self._latest = self._latest, None
        if update is None or update.version > self._sent_version:
            return update
        return update if self._again and update.version == self._sent_version else None

    async def _reread(self, response: web.StreamResponse) -> bool:
        """Read the task and send it if newer; True when the stream should end."""
        try:
            task = await self._access.read(self.task_id, self.digest)
        except StoreUnavailable:
            return False  # keep the stream; the next poll tries again
        if task is None:
            return True  # deleted under us, or the caller lost access: end the stream
        update = snapshot(task)
        if update.version > self._sent_version:
            return await self._send(update, response)
        return False

    async def _send(self, update: Update, response: web.StreamResponse) -> bool:
        """Send one event from this task; True when the stream should end (terminal state).

        No timeout per write: a client that stops reading is dropped by the pinger once its
        socket took nothing for SSE_SEND_TIMEOUT (gateway.keepalive; or by aiohttp-sse's
        ping task, whose write times out), which aborts the connection, failing this write."""
        self._sent_version = update.version  # before the write yields: `deliver` skips it
        await response.write(update.frame)
        self._stats.events += 1
        if update.received:
            self._stats.lag.record_since(update.received)
        return update.terminal
