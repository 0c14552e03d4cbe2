"""How well the gateway's event loop keeps time: loop stalls and garbage-collection pauses.

Every stream shares one loop, so anything that holds it (a full garbage collection, a sweep
that processes too many streams at once) delays every delivery by as much. Two measures,
exported in `/metrics` in production as well as read by `make bench`:

- `praxiom_gateway_loop_stall_seconds`: a callback due every GATEWAY_LOOP_STALL_TICK records
  how late it ran. An idle loop runs it on time; a loop held for 100 ms runs it ~100 ms late.
  It costs one timer handle per tick (200 a second at the default), nothing per stream.
  `praxiom_gateway_loop_stall_cpu_seconds` is the part of each lateness the process spent on
  a CPU (its own work); the rest it waited for one (a busy host, a throttled container).
- `praxiom_gateway_gc_pause_seconds{generation}`: `gc.callbacks` times every collection,
  which runs on the loop's thread and so holds it for as long.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from praxiom_progress.gateway.lag import LagHistogram

#: Upper bounds in seconds: timer jitter up to a loop held for seconds.
STALL_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.5,
)
GENERATIONS = (0, 1, 2)


class LoopStallTicker:
    """A timer that measures its own lateness, every `tick_s`."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.stalls = LagHistogram(STALL_BUCKETS_S)
        self.busy = LagHistogram(STALL_BUCKETS_S)  # the process's own CPU within each
        self.longest_s = 0.0  # the worst lateness seen, for a quick look in a test or a bench
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cpu = 0.0  # process CPU time when the timer was set

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(time.process_time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, cpu: float) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.tick_s
        self._cpu = cpu
        self._handle = self._loop.call_at(due, self._fired, due)

    def _fired(self, due: float) -> None:
        assert self._loop is not None
        late = max(0.0, self._loop.time() - due)
        cpu = time.process_time()  # one clock read a tick (a system call on some hosts)
        self.stalls.observe(late)
        # Of the lateness, what the process itself computed: at most the CPU it used since the
        # timer was set (an upper bound: CPU used within the tick itself counts too).
        self.busy.observe(min(late, max(0.0, cpu - self._cpu)))
        if late > self.longest_s:
            self.longest_s = late
        self._schedule(cpu)


class GcPauses:
    """Every garbage collection's duration, by generation (a `gc.callbacks` entry)."""

    def __init__(self) -> None:
        self.pauses = {g: LagHistogram(STALL_BUCKETS_S) for g in GENERATIONS}
        self.collected = dict.fromkeys(GENERATIONS, 0)  # objects freed, by generation
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = min(int(info.get("generation", 2)), 2)
        self.pauses[generation].observe(time.perf_counter() - self._started)
        self.collected[generation] += int(info.get("collected", 0))


class LoopHealth:
    """The ticker and the collection timer of one gateway app, started and stopped with it."""

    def __init__(self, tick_s: float) -> None:
        self.ticker = LoopStallTicker(tick_s)
        self.gc = GcPauses()

    def start(self) -> None:
        self.ticker.start()
        self.gc.install()

    def stop(self) -> None:
        self.ticker.stop()
        self.gc.uninstall()
