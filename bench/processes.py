"""The reconnect storm against our gateway run as 1 and as 2 processes on one port
(GATEWAY_PROCESSES), side by side: what a second core buys when every tab reconnects at once.

Both variants run at once, each a fresh `gateway` command with load generators of its own,
warmed up with a few streams; their storms (the main storm scenario's, bench/scenarios.py)
alternate BENCH_STORM_REPEATS times, the other command idle meanwhile, so a noisy moment on a
shared machine falls on both. CPU is the supervisor's and all its processes' together.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import psutil

from bench.config import Config
from bench.fixtures import Fixture, Publisher
from bench.procs import LoadGens, Server, free_port, start, stop, wait_listening
from bench.scenarios import GatewayBench, Storm

#: The variants measured, in gateway processes.
PROCESS_COUNTS = (1, 2)
#: The target for all first events of the storm, by processes (at BENCH_STORM=2000).
TARGET_S = {1: 1.2, 2: 0.8}


@dataclass
class ProcessStorms:
    # Every storm by gateway processes, in the order run (the variants alternate).
    storms: dict[int, list[Storm]] = field(default_factory=dict)

    def median(self, processes: int) -> Storm:
        """The storm whose all-ready time is the median of that variant's."""
        runs = sorted(self.storms[processes], key=lambda s: _or_inf(s.all_ready_s))
        return runs[(len(runs) - 1) // 2]


def _or_inf(value: float) -> float:
    return math.inf if math.isnan(value) else value


async def wait_all_listening(server: Server, processes: int, timeout_s: float = 30) -> None:
    """Until `processes` processes of the server's tree listen on its port (the supervisor
    holds the port before its processes listen, so one answering is not all of them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        tree = [psutil.Process(pid) for pid in server.pids()]
        listening = sum(
            any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                for c in p.net_connections(kind="tcp"))
            for p in tree
        )  # fmt: skip
        if listening >= processes:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{listening} of {processes} gateway processes listening")
        await asyncio.sleep(0.1)


async def start_variant(
    processes: int, env: dict[str, str], fixture: Fixture, publisher: Publisher, cfg: Config
) -> GatewayBench:
    """A fresh gateway command with `processes` processes, its load generators, warmed up."""
    port = free_port()
    process = start(
        ["-m", "praxiom_progress.cli.main", "gateway"],
        dict(env, GATEWAY_PORT=str(port), GATEWAY_PROCESSES=str(processes)),
    )
    try:
        server = Server(f"{processes} processes", port, process)
        await wait_listening(port, process)
        await wait_all_listening(server, processes)
        loadgens = await LoadGens.start(cfg.loadgens, port, fixture.token)
    except BaseException:
        stop(process)
        raise
    bench = GatewayBench(server, loadgens, fixture.task_ids, publisher, first_is_event=True)
    await bench.warm_up()
    return bench


async def measure(
    env: dict[str, str], fixture: Fixture, publisher: Publisher, cfg: Config
) -> ProcessStorms:
    """Both variants up side by side (idle between their turns), their storms alternated."""
    result = ProcessStorms({n: [] for n in PROCESS_COUNTS})
    benches: list[GatewayBench] = []
    try:
        for processes in PROCESS_COUNTS:
            benches.append(await start_variant(processes, env, fixture, publisher, cfg))
        for _ in range(cfg.storm_repeats):
            for processes, bench in zip(PROCESS_COUNTS, benches, strict=True):
                result.storms[processes].append(await bench.storm(cfg.storm))
    finally:
        for bench in benches:
            await bench.loadgens.stop()
            stop(bench.server.process)
    return result


def _cell(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def render(result: ProcessStorms, cfg: Config) -> str:
    """A markdown section: one column per process count, each its median storm."""
    counts = sorted(result.storms)
    storms = [result.median(n) for n in counts]
    spread = [", ".join(_cell(s.all_ready_s) for s in result.storms[n]) for n in counts]
    rows = [
        ("all streams had their first event after (s)", [_cell(s.all_ready_s) for s in storms]),
        ("the same, every storm in the order run (s)", spread),
        ("first event p50 (ms)", [_cell(s.p50_ms, 1) for s in storms]),
        ("first event p99 (ms)", [_cell(s.p99_ms, 1) for s in storms]),
        ("streams ready", [f"{s.ready:,} of {s.streams:,}" for s in storms]),
        ("server CPU during the storm (% of a core, all processes)",
         [_cell(s.server_cpu_pct, 1) for s in storms]),
        ("load generators' CPU during the storm (% of a core)",
         [_cell(s.loadgen_cpu_pct, 1) for s in storms]),
        ("connects dropped by a full listen queue", [f"{s.listen_overflows:,}" for s in storms]),
        ("target for all first events (s)", [f"≤ {TARGET_S.get(n, math.nan):g}" for n in counts]),
        ("met?", [_met(s, TARGET_S.get(n, math.nan)) for n, s in zip(counts, storms, strict=True)]),
    ]  # fmt: skip
    head = "| measure | " + " | ".join(f"{n} gateway process{'es' * (n > 1)}" for n in counts)
    lines = [head + " |", "|---" * (len(counts) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    table = "\n".join(lines) + _missed(counts, storms)
    return f"""## Reconnect storm on 1 and 2 gateway processes

The same storm ({cfg.storm:,} authenticated streams opened at one instant, each on its own
task) against two `gateway` commands running side by side, one with `GATEWAY_PROCESSES=1`
and one with `GATEWAY_PROCESSES=2` (two processes on one port, `SO_REUSEPORT`), each warmed
up with 200 streams and its own load generators; their storms alternate, {cfg.storm_repeats}
each, the other command idle meanwhile. Each column is its median storm (by the time all
streams were ready). The load generators and PostgreSQL share the machine's cores with the
servers.

{table}
"""


def _missed(counts: list[int], storms: list[Storm]) -> str:
    """Where the time goes when the storm on more processes misses its target."""
    by_count = dict(zip(counts, storms, strict=True))
    one, two = by_count.get(1), by_count.get(2)
    if one is None or two is None or not two.all_ready_s > TARGET_S[2]:
        return ""
    return (
        f"\n\nThe two processes miss their target by {two.all_ready_s - TARGET_S[2]:.2f} s: "
        f"they took {two.all_ready_s / one.all_ready_s:.2f} of one process's time, not half, "
        "because a second process adds no core here. Both run on the machine's two cores "
        f"with the load generators ({two.loadgen_cpu_pct:.0f} % of a core) and PostgreSQL, "
        "which answers each open's two queries, and the servers used "
        f"{two.server_cpu_pct:.0f} % of a core between them (one process: "
        f"{one.server_cpu_pct:.0f} %): a second process splits the opens' own work, not the "
        "waits for PostgreSQL and for the cores the others hold. On a host with a core per "
        "gateway process and the clients elsewhere, the split is what it gains."
    )


def _met(storm: Storm, target: float) -> str:
    if storm.ready != storm.streams:
        return f"**no**: only {storm.ready:,} of {storm.streams:,} got their first event"
    if math.isnan(storm.all_ready_s):
        return "no (not measured)"
    if storm.all_ready_s <= target:
        return "yes"
    return f"**no**: {storm.all_ready_s:.2f} s, {storm.all_ready_s / target:.2f}x the target"
