"""A plain `def` handler, run in a thread of its own so blocking code never freezes the loop.

Its `report_progress` crosses back to the loop (`run_coroutine_threadsafe`) and waits for the
write, so a report is as durable as an async handler's and `TaskLost` surfaces in the thread.
A thread cannot be killed: when the runner stops waiting for it (timeout, cancel, shutdown)
its next report raises `TaskLost`, and code that never reports runs on until it returns.
That is what `isolation="process"` is for.

Each call gets a daemon thread rather than a slot in a `ThreadPoolExecutor`: the runner
already holds at most `RUNNER_CONCURRENCY` tasks, and a pool's worker threads are joined at
interpreter exit, so one handler stuck forever would keep a stopped runner from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any

from praxiom_progress.runner.handlers import (
    ProgressSink,
    SyncHandlerFn,
    SyncTaskContext,
    TaskInfo,
    TaskLost,
)


class HandlerThreads:
    """Counts the handler threads still alive, the abandoned (timed out, cancelled) included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.alive = 0

    async def call(self, run: SyncHandlerFn, info: TaskInfo, sink: ProgressSink) -> Any:
        """Run `run` in a new thread; what it returned (awaited on the loop when it returned
        an awaitable), or what it raised."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[Any] = loop.create_future()
        bridge = _ProgressBridge(loop, sink, info)
        context = SyncTaskContext.from_info(info, bridge.report)

        def settle(returned: Any, error: BaseException | None) -> None:
            if ended.done():  # the runner stopped waiting
                return
            if error is None:
                ended.set_result(returned)
            else:
                ended.set_exception(error)

        def body() -> None:
            returned: Any = None
            error: BaseException | None = None
            try:
                returned = run(context)
            except BaseException as exc:  # handed to the loop, which decides
                error = exc
            finally:
                with self._lock:
                    self.alive -= 1
            try:
                loop.call_soon_threadsafe(settle, returned, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        with self._lock:
            self.alive += 1
        thread = threading.Thread(
            target=body, name=f"handler-{info.task_type}-{info.task_id}", daemon=True
        )
        thread.start()
        try:
            returned = await ended
        finally:
            bridge.close()
        if inspect.isawaitable(returned):  # a plain def that hands back a coroutine
            returned = await returned
        return returned


class _ProgressBridge:
    """`report_progress` of a thread: runs the loop's sink and waits for the write."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: ProgressSink, info: TaskInfo):
        self._loop = loop
        self._sink = sink
        self._task_id = info.task_id
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def report(self, phase: str, progress_pct: int, message: str) -> None:
        if self._closed.is_set():
            raise TaskLost(f"task {self._task_id}: the runner no longer waits for this handler")
        if _running_loop() is self._loop:
            raise RuntimeError("a SyncTaskContext reports from its handler's thread, not the loop")
        try:
            written = asyncio.run_coroutine_threadsafe(
                self._sink(phase, progress_pct, message), self._loop
            )
        except RuntimeError as exc:  # the loop is closed
            raise TaskLost(f"task {self._task_id}: the runner has stopped") from exc
        try:
            written.result()
        except concurrent.futures.CancelledError as exc:
            raise TaskLost(f"task {self._task_id}: the report was cancelled") from exc


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
