"""Finds the handler that blocks the event loop.

An `async def` handler that calls blocking code (`time.sleep`, a CSV writer, a PDF library)
freezes every task of its runner, and no timeout can fire meanwhile. A thread of its own
pings the loop; a ping not answered within `RUNNER_LOOP_STALL` is a stall: it is logged
with the type and id of the task the loop is running (the culprit, caught in the act),
counted by task type (`praxiom_runner_loop_stalls_total`), and logged again with its
length once the loop answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("runner")

#: The task type a stall is counted under when the loop was not running a handler.
NO_TASK = "none"

#: Names the handler behind an asyncio task: (task type, task id), or None.
Culprit = Callable[["asyncio.Task[object] | None"], "tuple[str, str] | None"]


class LoopWatchdog:
    def __init__(self, stall_s: float, culprit: Culprit) -> None:
        self.stall_s = stall_s
        self._culprit = culprit
        self._lock = threading.Lock()
        self._stalls: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stalls(self) -> dict[str, int]:
        """Stalls so far, by the task type that was running (read by the metrics)."""
        with self._lock:
            return dict(self._stalls)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(loop,), name="loop-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Not joined: the thread notices within one `stall_s`, and joining from the loop
        would block the very loop it watches."""
        self._stop.set()
        self._thread = None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.wait(self.stall_s):
            answered = threading.Event()
            started = time.monotonic()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed
                return
            if answered.wait(self.stall_s):
                continue
            blocker = self._blocker(loop)
            self._note(blocker)
            while not answered.wait(self.stall_s):
                if self._stop.is_set():
                    return
            task_type, task_id = blocker or (NO_TASK, "")
            log.warning(
                "event loop was blocked for %.2fs (%s task %s)",
                time.monotonic() - started,
                task_type,
                task_id or "-",
                extra={"action": "loop_unblocked", "task_type": task_type, "task_id": task_id},
            )

    def _blocker(self, loop: asyncio.AbstractEventLoop) -> tuple[str, str] | None:
        try:
            return self._culprit(asyncio.current_task(loop))
        except Exception:  # the loop's state changed under us: the stall is still counted
            return None

    def _note(self, blocker: tuple[str, str] | None) -> None:
        task_type, task_id = blocker or (NO_TASK, "")
        with self._lock:
            self._stalls[task_type] += 1
        log.warning(
            "event loop blocked for over %gs by %s task %s: blocking code in an async handler"
            " (make it a plain def, or run it with asyncio.to_thread)",
            self.stall_s,
            task_type,
            task_id or "-",
            extra={"action": "loop_stalled", "task_type": task_type, "task_id": task_id},
        )
