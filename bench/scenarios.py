"""The gateway scenarios of issue 5, each run the same way against any server under test.

Every scenario is bounded (it gives up after a timeout and reports what it had), closes
its streams at the end, and waits for the server to go quiet before the next one starts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from uuid import UUID

from bench import loopstats
from bench.fixtures import Publisher
from bench.loopstats import LoopStats
from bench.procs import CpuMeter, LoadGens, Server, percentile, tcp_counters
from bench.profile import Profile, record

#: After the last publish, how long stragglers may still arrive.
DRAIN_S = 1.5
#: Between opening idle streams and reading RSS: lets allocations and first re-reads settle.
SETTLE_S = 1.5


@dataclass
class IdleLevel:
    streams: int
    kib_per_stream: float | None  # None: not run at this size (see `note`)
    open_s: float = 0.0  # opening the streams added at this level
    failed: int = 0
    open_cpu_s: float = float("nan")  # the server's CPU meanwhile (steadier on a busy machine)
    note: str = ""


@dataclass
class Idle:
    baseline_mib: float
    levels: list[IdleLevel]
    hold_s: float = 0.0  # how long the largest level was watched while idle
    hold_cpu_pct: float = 0.0  # the server's CPU meanwhile (idle re-reads)
    hold_events_per_s: float = 0.0  # events the clients got meanwhile (idle re-emits)
    hold_loop: LoopStats | None = None  # our gateway's stalls and collections meanwhile


@dataclass
class Delivery:
    """Publish-to-receive over a window: the 1 x N fan-out and the N tasks x 1 scenarios."""

    streams: int
    tasks: int
    published: int
    expected: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float
    loadgen_cpu_pct: float
    publisher_cpu_pct: float
    open_failed: int = 0
    profile: Profile | None = None
    kib_per_stream: float | None = None  # the server's RSS growth as the streams opened
    p999_ms: float = float("nan")
    server_cpu_s: float = float("nan")  # over the window and its drain
    loop: LoopStats | None = None  # our gateway's stalls and collections over the window
    opened_at_once: bool = False

    @property
    def cpu_us_per_event(self) -> float:
        """The server's CPU per update delivered to one stream."""
        return 1e6 * self.server_cpu_s / self.received if self.received else float("nan")

    @property
    def delivered_pct(self) -> float:
        return 100.0 * self.received / self.expected if self.expected else float("nan")


@dataclass
class Storm:
    streams: int
    ready: int
    all_ready_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float
    loadgen_cpu_pct: float
    statuses: dict[str, int] = field(default_factory=dict)
    listen_overflows: int = 0  # connects the server's full listen queue dropped
    syn_retransmits: int = 0  # SYNs clients had to send again (1 s later, then 3 s ...)


class GatewayBench:
    """One server under test, its load generators, the tasks it streams and the publisher."""

    def __init__(
        self,
        server: Server,
        loadgens: LoadGens,
        task_ids: list[UUID],
        publisher: Publisher,
        *,
        first_is_event: bool,
    ) -> None:
        self.server = server
        self.loadgens = loadgens
        self.task_ids = task_ids
        self.publisher = publisher
        # Ours sends the task's row at once; the naive baseline has no database, so its
        # streams count as ready when their response headers arrive.
        self.first_is_event = first_is_event

    def paths(self, task_ids: list[UUID]) -> list[str]:
        return [self.server.path(task_id) for task_id in task_ids]

    async def quiet(self, limit_s: float = 8.0) -> None:
        """Wait until the server uses under 5 % of a core (closed streams cleaned up)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            meter = CpuMeter(self.server.pids())
            await asyncio.sleep(0.25)
            if meter.percent() < 5:
                return

    async def settled_rss(self, limit_s: float = 10.0) -> int:
        """The server's RSS once it stops moving (under 256 KiB in half a second): right after
        a scenario closed thousands of streams the process is still handing memory back, and a
        reading taken then makes the next scenario's growth look negative."""
        deadline = time.monotonic() + limit_s
        rss = self.server.rss()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            previous, rss = rss, self.server.rss()
            if abs(rss - previous) < 256 * 1024:
                break
        return rss

    async def warm_up(self, streams: int = 200) -> None:
        """Open and close some streams, so pools, caches and code paths exist before RSS."""
        await self.loadgens.open(
            self.paths(self.task_ids[:streams]), wait_first=self.first_is_event
        )
        await self.loadgens.close_streams()
        await self.quiet()

    async def idle(self, levels: list[int], cap: int | None, cap_note: str, hold_s: float) -> Idle:
        """Idle streams on distinct tasks, added level by level; KiB per stream from RSS."""
        await self.warm_up()
        await asyncio.sleep(1.0)
        baseline = self.server.rss()
        result = Idle(baseline / 2**20, [])
        open_now = 0
        for level in levels:
            if cap is not None and level > cap:
                result.levels.append(IdleLevel(level, None, note=cap_note))
                continue
            started, meter = time.monotonic(), CpuMeter(self.server.pids())
            opened = await self.loadgens.open(
                self.paths(self.task_ids[open_now:level]), wait_first=self.first_is_event
            )
            open_s, open_cpu_s = time.monotonic() - started, meter.seconds()
            open_now = level
            await asyncio.sleep(SETTLE_S)
            kib = (self.server.rss() - baseline) / level / 1024
            result.levels.append(IdleLevel(level, kib, open_s, opened.failed, open_cpu_s))
        if open_now and hold_s > 0:
            await self.loadgens.reset()
            loop_before = await asyncio.to_thread(loopstats.scrape, self.server.port)
            meter = CpuMeter(self.server.pids())
            await asyncio.sleep(hold_s)
            result.hold_cpu_pct = meter.percent()
            loop_after = await asyncio.to_thread(loopstats.scrape, self.server.port)
            result.hold_loop = loopstats.window(loop_before, loop_after)
            _, events, _ = await self.loadgens.collect()
            result.hold_s = hold_s
            result.hold_events_per_s = events / hold_s
        await self.loadgens.close_streams()
        await self.quiet()
        return result

    async def deliver(
        self, task_ids: list[UUID], watchers_per_task: int, per_task_per_s: float,
        seconds: float, *, profile_what: str = "", paths: list[str] | None = None,
        at_once: bool = False, settle_s: float = 0.5,
    ) -> Delivery:  # fmt: skip
        """`watchers_per_task` streams on each task (or `paths`: streams that each see every
        publish once, such as workspace streams), then paced publishes straight to Redis.
        `at_once`: every stream connects at the same instant (tabs after a deploy), so their
        idle re-checks fall due together inside the window, as they would in production."""
        if paths is None:
            paths = [p for p in self.paths(task_ids) for _ in range(watchers_per_task)]
        rss_before = await self.settled_rss()
        at_ns = time.monotonic_ns() + 300_000_000 if at_once else None
        opened = await self.loadgens.open(
            paths, at_ns=at_ns, wait_first=self.first_is_event, timeout_s=60
        )
        await asyncio.sleep(settle_s)  # the opens' aftermath, before the window
        kib_per_stream = (self.server.rss() - rss_before) / len(paths) / 1024
        await self.loadgens.reset()
        loop_before = await asyncio.to_thread(loopstats.scrape, self.server.port)
        server = CpuMeter(self.server.pids())
        loadgens = CpuMeter(self.loadgens.pids)
        publisher = CpuMeter([_own_pid()])
        profiling = (
            asyncio.create_task(record(self.server.pid, seconds, profile_what))
            if profile_what
            else None
        )
        published = await self.publisher.run(task_ids, per_task_per_s, seconds)
        await asyncio.sleep(DRAIN_S)
        server_cpu, loadgen_cpu = server.percent(), loadgens.percent()
        server_cpu_s = server.seconds()
        publisher_cpu = publisher.percent()
        loop_after = await asyncio.to_thread(loopstats.scrape, self.server.port)
        received, _, latencies = await self.loadgens.collect()
        await self.loadgens.close_streams()
        result = Delivery(
            streams=len(paths),
            tasks=len(task_ids),
            published=published,
            expected=published * watchers_per_task,
            received=received,
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            max_ms=latencies[-1] if latencies else float("nan"),
            server_cpu_pct=server_cpu,
            loadgen_cpu_pct=loadgen_cpu,
            publisher_cpu_pct=publisher_cpu,
            open_failed=opened.failed,
            profile=await profiling if profiling is not None else None,
            kib_per_stream=kib_per_stream,
            p999_ms=percentile(latencies, 99.9),
            server_cpu_s=server_cpu_s,
            loop=loopstats.window(loop_before, loop_after),
            opened_at_once=at_once,
        )
        await self.quiet()
        return result

    async def storm(self, streams: int) -> Storm:
        """`streams` connects on distinct tasks, all started at the same instant."""
        task_ids = [self.task_ids[i % len(self.task_ids)] for i in range(streams)]
        at_ns = time.monotonic_ns() + 300_000_000  # every load generator is waiting by then
        server = CpuMeter(self.server.pids())
        loadgens = CpuMeter(self.loadgens.pids)
        tcp_before = tcp_counters()
        opened = await self.loadgens.open(
            self.paths(task_ids), at_ns=at_ns, wait_first=self.first_is_event, timeout_s=30
        )
        server_cpu, loadgen_cpu = server.percent(), loadgens.percent()
        tcp_after = tcp_counters()

        def tcp(name: str) -> int:
            return tcp_after.get(name, 0) - tcp_before.get(name, 0)

        waits = sorted((t - at_ns) / 1e6 for t in opened.ready_ns)
        await self.loadgens.close_streams()
        await self.quiet()
        return Storm(
            streams=streams,
            ready=opened.ready,
            all_ready_s=waits[-1] / 1000 if waits and not opened.failed else float("nan"),
            p50_ms=percentile(waits, 50),
            p99_ms=percentile(waits, 99),
            server_cpu_pct=server_cpu,
            loadgen_cpu_pct=loadgen_cpu,
            statuses=opened.statuses,
            listen_overflows=tcp("ListenOverflows"),
            syn_retransmits=tcp("TCPSynRetrans"),
        )


def _own_pid() -> int:
    import os

    return os.getpid()
