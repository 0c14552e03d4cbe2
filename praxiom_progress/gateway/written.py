"""Tasks written where nobody may publish: a gateway's spawn and cancel, or an application's
(`praxiom_progress.spawn`, `cancel`). The gateway's Redis user may only subscribe (README,
"Security model"), so no PUBLISH follows those writes; instead every gateway hears their
NOTIFY (gateway.listener), reads the tasks its own streams watch, in one query per batch, and
hands each payload to them through the very path a Redis message takes
(`Dispatcher.offer`), on the task's channel and its workspace's (workspace streams). A
notification missed while the LISTEN is down is repaired by the idle
re-read, as a lost Redis message is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sized
from uuid import UUID

from praxiom_progress.gateway.dispatching import Dispatcher
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.taskstate.cancellation import cancel_and_wait
from praxiom_progress.taskstate.channels import progress_channel, workspace_channel
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.payloads import payload_bytes, task_payload

log = logging.getLogger("gateway.written")


class TaskWrites:
    def __init__(
        self, store: GatewayStore, dispatcher: Dispatcher, workspace_streams: Sized = ()
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        # While any workspace stream is open, every task heard of is read: its workspace's
        # stream may watch it (gateway.workspace), and only the row says which workspace.
        self._workspace_streams = workspace_streams
        self._heard: set[UUID] = set()
        self._reading: asyncio.Task[None] | None = None
        self.offered = 0  # payloads handed to the dispatcher (tests, metrics)

    def heard(self, payload: str) -> None:
        """A task id from a NOTIFY; read (soon, with the others heard meanwhile) only when a
        stream of this gateway watches it."""
        try:
            task_id = UUID(payload)
        except ValueError:
            return
        if not self._workspace_streams and not self._dispatcher.watching(progress_channel(task_id)):
            return
        self._heard.add(task_id)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="task-writes")

    async def _read(self) -> None:
        while self._heard:
            task_ids, self._heard = list(self._heard), set()
            try:
                tasks = await self._store.tasks(task_ids)
            except StoreUnavailable as exc:
                log.info("could not read written tasks, the idle re-read will: %s", exc)
                return
            for task in tasks:
                data = payload_bytes(task_payload(task))
                self._dispatcher.offer(progress_channel(task.id), data)
                if task.workspace_id is not None:
                    self._dispatcher.offer(workspace_channel(task.workspace_id), data)
                self.offered += 1

    async def close(self) -> None:
        if self._reading is not None:
            await cancel_and_wait([self._reading])
