"""One open workspace stream (`GET /api/workspaces/{id}/progress`): every task of a workspace
on one connection, owned by one object, `WorkspaceStream`.

It rides the task stream's machinery: the dispatcher's one shared subscription hands it every
payload published on `praxiom:workspace_progress:{id}` (`deliver`, `wake`), decoded once with
its SSE `data:` lines built once (gateway.frames), and it sends each task's payload as exactly
those bytes. Its rules, held here alone:

- **Per task, versions never go down** (`_sent`): a state is sent only when newer than the
  one that task last sent.
- **Writes**: while the stream is live and nothing waits, `deliver` writes an update its
  socket can take at once itself, in the dispatcher's pass (as a task stream does:
  gateway.direct_write); anything else goes to the mailbox and wakes the stream's task.
- **A slow client** gets the newest state of each task (`_mailbox` keeps one per task, so a
  terminal state, always a task's newest, is never dropped).
- **The event id** is not a task's version (one id cannot order many tasks) but a *mark*:
  the snapshot xmin of the stream's last read of PostgreSQL (gateway.workspace_reads). Every
  transaction below it had finished when that read ran, so its writes are in that read, which
  this stream sent before any event carrying the mark. A reconnect with `Last-Event-ID: M`
  therefore gets every task running now (progress writes leave a running row's changed_xid,
  so PostgreSQL updates it in place) and every task whose last write's transaction is not
  below M (`changed_xid >= M`, schema.sql): nothing is lost, even when two writes commit in
  another order than they began, and repeats are harmless (clients keep the highest version
  per task). Within a read's batch only the last event carries the new mark, so a connection
  cut mid-batch resumes from the old one; a read that sends nothing moves the client's mark
  with an `id:`-only block (no `data:`, so no event fires).
- **Re-checked while open**: every `SSE_IDLE_TIMEOUT` the stream reads what changed since its
  mark (which re-checks its caller, and moves the mark on); revocation re-checks it at once
  (gateway.revocation, through gateway.workspace_sse). No access: the stream ends.
- **Redis down**: the same read every `SSE_POLL_INTERVAL` (at most `SSE_POLL_LIMIT` times,
  then it closes), and once more when the subscription is back.
- **Trust**: a workspace channel's payload does not say its workspace, so a task this stream
  has not sent yet is read from PostgreSQL first (`authorize_task`, grouped), and sent only if
  it is this workspace's; a version too far ahead triggers a read too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.errors import refusal
from praxiom_progress.gateway.frames import Update, snapshot
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.gateway.stream import StreamStats, Subscription
from praxiom_progress.gateway.wakeup import Wakeable
from praxiom_progress.gateway.workspace_reads import WorkspaceRead, WorkspaceReads
from praxiom_progress.taskstate.channels import workspace_channel
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.settings import Settings

log = logging.getLogger("gateway.workspace")
T = TypeVar("T")


class WorkspaceStream(Wakeable):
    __slots__ = (
        "__weakref__", "_closing", "_ended", "_held", "_limit_stats", "_mailbox", "_mark",
        "_outbox", "_reads", "_recheck", "_sent", "_settings", "_socket", "_stats", "_store",
        "_transport", "_unverified", "channel", "digest", "workspace_id",
    )  # fmt: skip

    def __init__(
        self,
        workspace_id: UUID,
        digest: bytes,
        reads: WorkspaceReads,
        store: GatewayStore,
        settings: Settings,
        stats: StreamStats,
        limit_stats: LimitStats,
    ) -> None:
        super().__init__()
        self.workspace_id = workspace_id
        self.channel = workspace_channel(workspace_id)
        self.digest = digest  # every read re-checks the caller's token (security)
        self._reads = reads
        self._store = store
        self._settings = settings
        self._stats = stats
        self._limit_stats = limit_stats
        self._mark = 0  # the event id: see the module's docstring
        self._sent: dict[str, int] = {}  # task id -> the highest version sent
        self._ended: set[str] = set()  # tasks whose terminal state was sent: forgotten later
        self._mailbox: dict[str, Update] = {}  # task id -> its newest update not sent yet
        self._unverified: dict[str, Update] = {}  # tasks not sent yet: checked in PostgreSQL
        self._recheck = False  # read PostgreSQL before sending more (a jump too far ahead)
        self._closing = False
        self._held = False  # access changed somewhere: send nothing until re-checked
        self._transport: asyncio.Transport | None = None  # set while `deliver` may write
        self._socket: asyncio.Transport | None = None  # where it may (gateway.direct_write)
        self._outbox: list[Update] = []  # what `deliver` wrote in this pass of the loop

    # -- the dispatcher's ------------------------------------------------------------------

    def deliver(self, update: Update, now: float) -> int:
        """Hand the stream `update` if it is newer than what its task sent. 1: written to the
        socket at once (live, nothing waiting, the socket empty: gateway.direct_write); 0:
        queued for the stream's task, or stale; -1: it replaced one not sent yet (a slow
        client)."""
        task_id = update.task_id
        sent = self._sent.get(task_id)
        if sent is None:  # a new task (a spawn), or a forged id: PostgreSQL says which
            if len(self._unverified) < self._settings.sse_workspace_max_tasks:
                self._unverified[task_id] = update
            else:
                self._recheck = True
            self.wake()
            return 0
        if update.version <= sent:
            return 0
        if update.version - sent > self._settings.sse_max_version_jump:
            self._recheck = True
            self.wake()
            return 0
        queued = self._mailbox.get(task_id)
        if queued is not None and queued.version >= update.version:
            return 0
        transport = self._transport
        if (
            transport is not None
            and not self._mailbox
            and not self._held
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        ):
            self._sent[task_id] = update.version
            if update.terminal:
                self._ended.add(task_id)
            if not self._outbox:  # a burst of one workspace's updates: one write, one syscall
                asyncio.get_running_loop().call_soon(self._write_outbox)
            self._outbox.append(update)
            return 1
        self._mailbox[task_id] = update
        if not self._held:
            self.wake()
        return 0 if queued is None else -1

    def _write_outbox(self) -> None:
        """Write what `deliver` took in this pass of the event loop, as one chunk. The stream's
        task calls it too before it writes anything itself, so the socket keeps the order."""
        outbox, self._outbox = self._outbox, []
        transport = self._transport
        if not outbox or transport is None or transport.is_closing():
            return
        frames = b"".join(b"id: %d\r\n%s\r\n" % (self._mark, u.lines) for u in outbox)
        transport.write(b"%x\r\n%s\r\n" % (len(frames), frames))

    # -- revocation's ----------------------------------------------------------------------

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        self.wake()

    def close(self) -> None:
        self._closing = True
        self.wake()

    # -- its own task's --------------------------------------------------------------------

    async def run(
        self,
        first: WorkspaceRead,
        retry_ms: int,
        response: web.StreamResponse,
        dispatcher: Subscription,
        transport: asyncio.Transport | None = None,
    ) -> None:
        """Send the first read (with the reconnect hint), then every change until the client
        leaves, the caller loses access, or polling reaches SSE_POLL_LIMIT. `transport`:
        where `deliver` may write chunks itself, or None (gateway.direct_write)."""
        await self._send_read(first, response, b"retry: %d\r\n" % retry_ms)
        del first  # up to SSE_WORKSPACE_MAX_TASKS rows: an open stream keeps none of them
        self._socket = transport
        try:
            await self._follow(response, dispatcher)
        finally:
            self._socket = self._transport = None
            self._outbox = []

    async def _follow(self, response: web.StreamResponse, dispatcher: Subscription) -> None:
        settings = self._settings
        # Streams opened together re-read at different times, not all in the same instant.
        checked_at = time.monotonic() - random.uniform(0, settings.sse_idle_timeout_s / 2)
        polls = 0
        polling = False
        while not self._closing:
            if dispatcher.available_for(self):
                if polling:  # back from polling: anything published meanwhile was lost
                    polling, polls = False, 0
                    if not await self._catch_up(response):
                        return
                    checked_at = time.monotonic()
                    continue
                due = checked_at + settings.sse_idle_timeout_s - time.monotonic()
                self._transport = self._socket  # the headers are out: chunks may follow
                woken = due > 0 and await self.wait(due)
                self._write_outbox()  # this task writes now: `deliver`'s go first, and it
                self._transport = None  # must not interleave
                if self._held or self._closing:
                    continue
                if not woken or self._recheck:  # the periodic re-check, or a jump to verify
                    self._recheck = False
                    if not await self._catch_up(response):
                        return
                    checked_at = time.monotonic()
                    continue
                if self._unverified:
                    await self._verify(response)
                await self._flush(response)
            else:
                polling = True
                if polls >= settings.sse_poll_limit:
                    self._stats.poll_limit_closes += 1
                    return
                await self.wait(settings.sse_poll_interval_s)
                if self._closing or dispatcher.available_for(self):
                    continue
                polls += 1
                self._stats.polls += 1
                if not await self._catch_up(response):
                    return

    async def _catch_up(self, response: web.StreamResponse) -> bool:
        """Read what changed since the mark and send it; False when the stream should end
        (the caller lost access). PostgreSQL away: nothing happens, the next try comes."""
        try:
            read = await self._reading(
                self._reads.changes(self.digest, self.workspace_id, self._mark)
            )
        except StoreUnavailable:
            return True
        if not read.allowed:  # a lost membership or grant, or a token expired or revoked
            self.lost(Decision.FORBIDDEN)
            return False
        await self._send_read(read, response)
        return True

    async def _verify(self, response: web.StreamResponse) -> None:
        """Tasks this stream has not sent yet: read each (with its caller's access), and send
        it if it is this workspace's; a payload for any other task is dropped."""
        unverified, self._unverified = self._unverified, {}
        checks = []
        for task_id in unverified:
            try:
                checks.append(self._store.authorize_task(self.digest, UUID(task_id)))
            except ValueError:
                self._stats.foreign_tasks += 1
        try:
            found = await self._reading(asyncio.gather(*checks))
        except StoreUnavailable:
            self._recheck = True  # the next pass reads the whole workspace's changes instead
            return
        updates = []
        for access in found:
            task = access.task
            if task is None or task.workspace_id != self.workspace_id:
                self._stats.foreign_tasks += 1
                continue
            # Its task is this workspace's: the published state, then the row if newer.
            updates += [unverified[str(task.id)], snapshot(task)]
        await self._send(updates, None, response)
        for task_id in [t for t in self._unverified if t in self._sent]:  # came meanwhile
            self.deliver(self._unverified.pop(task_id), 0.0)

    async def _reading(self, read: Awaitable[T]) -> T:
        """Await a read of PostgreSQL while `deliver` goes on writing live updates (under the
        mark as it was): a query must not hold a busy workspace's stream back."""
        self._transport = self._socket
        try:
            return await read
        finally:
            self._write_outbox()
            self._transport = None

    async def _flush(self, response: web.StreamResponse) -> None:
        mailbox, self._mailbox = self._mailbox, {}
        await self._send(mailbox.values(), None, response)

    async def _send_read(
        self, read: WorkspaceRead, response: web.StreamResponse, opener: bytes = b""
    ) -> None:
        """A read's tasks, newest first, the last event carrying the read's mark (or an
        `id:`-only block when nothing was new, so the client's mark moves on)."""
        updates = [snapshot(task) for task in read.tasks]
        if not await self._send(updates, read.mark, response, opener) and (
            read.mark > self._mark or opener
        ):
            self._mark = max(self._mark, read.mark)
            await response.write(b"%sid: %d\r\n\r\n" % (opener, self._mark))

    async def _send(
        self,
        updates: Iterable[Update],
        mark: int | None,
        response: web.StreamResponse,
        opener: bytes = b"",
    ) -> int:
        """Send every update newer than its task's last, in one write; the last event carries
        `mark` (when given), the others the current one. How many events went out."""
        fresh = []
        for update in updates:
            if update.version > self._sent.get(update.task_id, 0):
                self._sent[update.task_id] = update.version  # before the write yields
                fresh.append(update)
        if not fresh:
            return 0
        self._forget_ended(fresh)
        old = self._mark
        last = len(fresh) - 1
        if mark is not None:
            self._mark = max(old, mark)
        chunk = b"".join(
            b"id: %d\r\n%s\r\n" % (self._mark if i == last else old, update.lines)
            for i, update in enumerate(fresh)
        )
        await response.write(opener + chunk)
        self._stats.events += len(fresh)
        for update in fresh:
            if update.received:
                self._stats.lag.record_since(update.received)
        return len(fresh)

    def _forget_ended(self, fresh: list[Update]) -> None:
        """A long-lived stream must not remember every task it ever sent: once the finished
        ones outnumber SSE_WORKSPACE_MAX_TASKS they are forgotten (a late copy of one is then
        read from PostgreSQL again, and sent again at most: a repeat, never an older state)."""
        self._ended.update(update.task_id for update in fresh if update.terminal)
        if len(self._ended) > self._settings.sse_workspace_max_tasks:
            for task_id in self._ended:
                self._sent.pop(task_id, None)
            self._ended.clear()

    def lost(self, decision: Decision) -> None:
        """Count and log the end of a stream whose caller lost access (never the token)."""
        self._limit_stats.streams_access_lost += 1
        status = refusal(decision).status
        log.info(
            "workspace stream of %s ended: the caller lost access (%d)",
            self.workspace_id,
            status,
            extra={"action": "stream_access_lost", "workspace_id": str(self.workspace_id)},
        )
