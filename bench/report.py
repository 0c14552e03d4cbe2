"""BENCHMARKS.md: one table per scenario, each figure next to its comparison and its target.

Every missed target says by how much, so the report reads as a to-do list.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import limits, process_scenarios, processes, workspaces
from bench.procs import REPO
from bench.profile import Profile
from bench.results import NAIVE, OURS, OURS_2, Results
from bench.runnerbench import ReportRate
from bench.scenarios import Delivery
from bench.transactions import TARGET_P99_MS, CommitToClaim
from praxiom_progress.taskstate.settings import Settings

__all__ = ["REPO", "render"]

#: The references for idle memory, measured when the targets were set (KiB per stream at 10,000).
BARE_AIOHTTP_SSE_KIB = 14.5
NAIVE_REFERENCE_KIB = 57


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.2f}"


def at_most(value: float | None, target: float, what: str, unit: str) -> str:
    """`met?` for a ceiling: 'yes', or how far over it is."""
    if value is None or math.isnan(value):
        return "no (not measured)"
    if value <= target:
        return "yes"
    measured = f"{what} {fmt(value)} {unit}".strip()
    return f"**no**: {measured}, {value / target:.1f}x the {fmt(target)} {unit} target"


def at_least(value: float | None, target: float, what: str, unit: str) -> str:
    """`met?` for a floor: 'yes', or how far short it falls."""
    if value is None or math.isnan(value):
        return "no (not measured)"
    if value >= target:
        return "yes"
    share = value / target
    measured = f"{what} {fmt(value, 2)}{unit}".strip()
    return f"**no**: {measured}, {share:.2f} of the {fmt(target, 2)}{unit} target"


def table(rows: Sequence[tuple[str, ...]], comparison: str) -> str:
    head = f"| measure | praxiom-progress | {comparison} | ratio | target | met? |\n"
    head += "|---|---|---|---|---|---|\n"
    return head + "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gib = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _delivery_rows(ours: Delivery, naive: Delivery, p99_target: float) -> list[tuple[str, ...]]:
    def row(
        label: str, get: Callable[[Delivery], float], target: str = "—", met: str = "—"
    ) -> tuple[str, ...]:
        a, b = get(ours), get(naive)
        return (label, fmt(a), fmt(b), ratio(a, b), target, met)

    return [
        row("publish→receive p50 (ms)", lambda d: d.p50_ms),
        row(
            "publish→receive p99 (ms)",
            lambda d: d.p99_ms,
            f"≤ {p99_target:g}",
            at_most(ours.p99_ms, p99_target, "p99", "ms"),
        ),
        row("publish→receive p99.9 (ms)", lambda d: d.p999_ms),
        row("publish→receive max (ms)", lambda d: d.max_ms),
        row("server CPU per delivered event (µs)", lambda d: d.cpu_us_per_event),
        row(
            "delivered (%)",
            lambda d: d.delivered_pct,
            "100",
            "yes"
            if ours.received >= ours.expected
            else f"**no**: {fmt(ours.delivered_pct, 2)} %, {ours.expected - ours.received:,} of "
            f"{ours.expected:,} updates missing",
        ),
        row("server CPU while publishing (% of a core)", lambda d: d.server_cpu_pct),
        row("load generators' CPU, all together (% of a core)", lambda d: d.loadgen_cpu_pct),
        row("publisher (this harness) CPU (% of a core)", lambda d: d.publisher_cpu_pct),
        (
            "streams that failed to open",
            str(ours.open_failed),
            str(naive.open_failed),
            "—",
            "0",
            "yes" if not ours.open_failed else f"**no**: {ours.open_failed} failed",
        ),
    ]


def _profile_section(profiles: list[Profile]) -> str:
    if not profiles:
        return ""
    parts = [
        "## Where the time goes (`BENCH_PROFILE=1`)\n",
        "py-spy samples at 200 Hz without pausing the process (`--nonblocking`), in an "
        "extra pass of the same workload, so the tables above are not disturbed by it. "
        'Percentages are of wall-clock samples, i.e. % of one core; "own" is time in '
        'the function itself (C calls it makes count as its own), "inclusive" adds '
        "everything it calls (listed for praxiom_progress/ only).\n",
    ]
    for profile in profiles:
        parts.append(f"### {profile.what} ({profile.seconds:g} s)\n")
        if profile.error:
            parts.append(f"py-spy failed: `{profile.error}`\n")
            continue
        parts.append(f"Busy: {profile.busy_pct:.0f} % of a core.\n")
        parts.append("| own % | function | | inclusive % | function |\n|---|---|---|---|---|")
        for i in range(max(len(profile.own), len(profile.inclusive))):
            own = profile.own[i] if i < len(profile.own) else ("", 0.0)
            inc = profile.inclusive[i] if i < len(profile.inclusive) else ("", 0.0)
            parts.append(f"| {own[1]:.1f} | `{own[0]}` | | {inc[1]:.1f} | `{inc[0]}` |")
        parts.append("")
    return "\n".join(parts) + "\n"


def render(results: Results) -> str:
    cfg = results.config
    ours, naive = results.gateways[OURS], results.gateways[NAIVE]
    command = " ".join(filter(None, [cfg.knobs, "DATABASE_URL=… REDIS_URL=… make bench"]))
    out: list[str] = []
    out.append(f"""# Benchmarks

Written by `make bench` (`python -m bench`); do not edit by hand. Every figure below comes
from one run, side by side on one machine.

- date: {results.date or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- machine: {_machine()}
- command: `{command}` (took {results.seconds:.0f} s)
- load: {cfg.loadgens} raw-socket load-generator processes (`bench/loadgen.py`) on the same
  cores as the servers; updates are published straight to Redis by this harness, so the
  gateway scenarios measure the gateway alone. The naive baseline (`bench/naive_gateway.py`)
  is the tutorial endpoint: one Redis subscription per connection, no auth, no database; the
  floor baseline (`bench/floor_gateway.py`, "Against the floor") is our stack at its leanest.
""")

    # -- idle ---------------------------------------------------------------------------------
    largest = max(cfg.idle_levels)
    naive_by_level = {lv.streams: lv for lv in naive.idle.levels}
    rows: list[tuple[str, ...]] = []
    for level in ours.idle.levels:
        other = naive_by_level.get(level.streams)
        b = other.kib_per_stream if other else None
        target, met = (
            ("≤ 14", at_most(level.kib_per_stream, 14, "", "KiB"))
            if level.streams == largest
            else ("—", "—")
        )
        rows.append(
            (
                f"memory per idle stream at {level.streams:,} (KiB)",
                fmt(level.kib_per_stream),
                fmt(b) if b is not None else (other.note if other else "n/a"),
                ratio(level.kib_per_stream, b),
                target,
                met,
            )
        )
    for level in ours.idle.levels:
        other = naive_by_level.get(level.streams)
        b_open = other.open_s if other and other.kib_per_stream is not None else None
        rows.append(
            (
                f"time to open the streams added at {level.streams:,} (s)",
                fmt(level.open_s, 2),
                fmt(b_open, 2),
                ratio(level.open_s, b_open),
                "—",
                "—",
            )
        )
    held = [lv for lv in ours.idle.levels if lv.kib_per_stream is not None]
    held_n = held[-1].streams if held else 0
    naive_held = [lv for lv in naive.idle.levels if lv.kib_per_stream is not None]
    naive_held_n = naive_held[-1].streams if naive_held else 0
    rows.append(
        (
            f"server CPU while idle, {ours.idle.hold_s:g} s at {held_n:,} streams "
            f"(naive: {naive_held_n:,}) (% of a core)",
            fmt(ours.idle.hold_cpu_pct),
            fmt(naive.idle.hold_cpu_pct),
            ratio(ours.idle.hold_cpu_pct, naive.idle.hold_cpu_pct),
            "—",
            "—",
        )
    )
    rows.append(
        (
            "idle re-emits received meanwhile (events/s)",
            fmt(ours.idle.hold_events_per_s),
            fmt(naive.idle.hold_events_per_s),
            "—",
            "—",
            "—",
        )
    )
    failed = sum(lv.failed for lv in ours.idle.levels), sum(lv.failed for lv in naive.idle.levels)
    rows.append(
        (
            "streams that failed to open",
            str(failed[0]),
            str(failed[1]),
            "—",
            "0",
            "yes" if not failed[0] else f"**no**: {failed[0]} failed",
        )
    )
    out.append(f"""## Idle streams: {", ".join(f"{n:,}" for n in cfg.idle_levels)}

Each stream watches a distinct running task (one browser tab per task). KiB per stream is
the server's RSS growth over the same process empty but warmed up (200 streams opened and
closed; ours {ours.idle.baseline_mib:.0f} MiB, naive {naive.idle.baseline_mib:.0f} MiB),
divided by the streams open, read {1.5:g} s after the last one opened; levels are cumulative.
References: bare aiohttp + aiohttp-sse ~{BARE_AIOHTTP_SSE_KIB} KiB, naive
baseline ~{NAIVE_REFERENCE_KIB} KiB per stream at 10,000. Our gateway keeps its real settings,
so every idle stream re-reads its row every `SSE_IDLE_TIMEOUT` (10 s) and re-emits it.

{table(rows, "naive baseline")}
""")

    # -- fan-out, many tasks ---------------------------------------------------------------------
    rate, seconds = f"{cfg.fanout_rate:g}", f"{cfg.seconds:g}"
    out.append(f"""## 1 task x {cfg.watchers:,} watchers, {rate} updates/s for {seconds} s

Latency is publish→receive: `result_data.sent_ns` (CLOCK_MONOTONIC, shared by every process
on the machine) stamped just before PUBLISH, against the load generator's clock when the bytes
arrive. Our gateway keeps only the newest state for a stream that falls behind, so
"delivered" below 100 % counts skipped intermediate states (each payload is a full state);
the naive one queues instead, and what had not arrived {1.5:g} s after the last publish is
missing.

{table(_delivery_rows(ours.fan_out, naive.fan_out, 20), "naive baseline")}

## {cfg.tasks:,} tasks x 1 watcher, 1 update/s each for {cfg.seconds:g} s

{cfg.tasks:,} publishes a second spread evenly over each second (in slices of at least 2 ms),
each to its own task's channel.

{table(_delivery_rows(ours.many, naive.many, 5), "naive baseline")}
""")

    # -- storm ----------------------------------------------------------------------------------
    so, sn = ours.storm, naive.storm
    storm_rows = [
        (
            "time until all streams had their first event (s)",
            fmt(so.all_ready_s, 2),
            fmt(sn.all_ready_s, 2),
            ratio(so.all_ready_s, sn.all_ready_s),
            "≤ 1.5",
            at_most(so.all_ready_s, 1.5, "all ready after", "s")
            if so.ready == so.streams
            else f"**no**: only {so.ready:,} of {so.streams:,} got their first event",
        ),
        (
            "first event p50 (ms)",
            fmt(so.p50_ms),
            fmt(sn.p50_ms),
            ratio(so.p50_ms, sn.p50_ms),
            "—",
            "—",
        ),
        (
            "first event p99 (ms)",
            fmt(so.p99_ms),
            fmt(sn.p99_ms),
            ratio(so.p99_ms, sn.p99_ms),
            "—",
            "—",
        ),
        (
            "streams ready",
            f"{so.ready:,} of {so.streams:,}",
            f"{sn.ready:,} of {sn.streams:,}",
            "—",
            "all",
            "yes" if so.ready == so.streams else "**no**",
        ),
        (
            "server CPU during the storm (% of a core)",
            fmt(so.server_cpu_pct),
            fmt(sn.server_cpu_pct),
            ratio(so.server_cpu_pct, sn.server_cpu_pct),
            "—",
            "—",
        ),
        (
            "load generators' CPU during the storm (% of a core)",
            fmt(so.loadgen_cpu_pct),
            fmt(sn.loadgen_cpu_pct),
            "—",
            "—",
            "—",
        ),
        ("HTTP statuses", _statuses(so.statuses), _statuses(sn.statuses), "—", "—", "—"),
        (
            "connects dropped by a full listen queue (kernel ListenOverflows)",
            f"{so.listen_overflows:,}",
            f"{sn.listen_overflows:,}",
            "—",
            "0",
            "yes" if not so.listen_overflows else "**no**",
        ),
        (
            "SYNs the clients had to resend (kernel TCPSynRetrans)",
            f"{so.syn_retransmits:,}",
            f"{sn.syn_retransmits:,}",
            "—",
            "—",
            "—",
        ),
    ]
    out.append(f"""## Reconnect storm: {cfg.storm:,} authenticated streams opened at once

Every load generator starts all of its connects at the same CLOCK_MONOTONIC instant, each
on a distinct task; times are from that instant. Each of our streams checks its token and
membership and reads its task in one query, then sends the row as its first event. The
naive baseline has **no auth and no database**: its streams count as ready when the response
headers arrive, after its own Redis subscription, so it is the cost of the connections alone.
The kernel counters are machine-wide (other processes' connects count too) and tell
whether connects waited for a SYN retransmit (1 s, then 3 s): our gateway listens with
`GATEWAY_BACKLOG` (4096), the naive one with aiohttp's default of 128 (this machine's
`somaxconn` is {_somaxconn()}).

{table(storm_rows, "naive baseline (no auth)")}
""")
    process_storms = getattr(results, "process_storms", None)  # (older pickles have none)
    if process_storms is not None:
        out.append(processes.render(process_storms, cfg))
    if OURS_2 in results.gateways:  # (older pickles have none)
        two = results.gateways[OURS_2]
        out.append(process_scenarios.render(ours, two, cfg.watchers, cfg.hot_watchers))

    # -- runner ---------------------------------------------------------------------------------
    rep, drain, spawn = results.reports, results.drain, results.spawn
    pg, pg1 = results.pgbench, results.pgbench_one
    assert rep is not None and drain is not None and spawn is not None
    assert pg is not None and pg1 is not None
    report_ratio = rep.per_s / pg.tps if pg.tps else float("nan")
    runner_rows = [
        (
            f"`report_progress` per second, {rep.concurrency} tasks (UPDATE + PUBLISH)",
            fmt(rep.per_s),
            f"pgbench UPDATE TPS, {pg.clients} clients: {fmt(pg.tps)}",
            ratio(rep.per_s, pg.tps),
            "≥ 0.50 of pgbench",
            at_least(report_ratio, 0.5, "ratio", ""),
        ),
        (
            "no-op tasks claimed and completed per second, one runner "
            f"(concurrency {rep.concurrency})",
            fmt(drain.per_s),
            f"pgbench UPDATE TPS: {fmt(pg.tps)}",
            ratio(drain.per_s, pg.tps),
            "≥ 1,000/s",
            at_least(drain.per_s, 1000, "", "/s"),
        ),
        (
            f"spawn→running p50 (ms), {spawn.rate_per_s:g} spawns/s",
            fmt(spawn.p50_ms, 2),
            f"one UPDATE round trip (pgbench, 1 client): {fmt(pg1.latency_ms, 2)}",
            ratio(spawn.p50_ms, pg1.latency_ms),
            "≤ 10",
            at_most(spawn.p50_ms, 10, "p50", "ms"),
        ),
        (
            "spawn→running p99 (ms)",
            fmt(spawn.p99_ms, 2),
            fmt(pg1.latency_ms, 2),
            ratio(spawn.p99_ms, pg1.latency_ms),
            "≤ 50",
            at_most(spawn.p99_ms, 50, "p99", "ms"),
        ),
        ("spawn→running max (ms)", fmt(spawn.max_ms, 2), "—", "—", "—", "—"),
        (
            "spawned tasks that started",
            f"{spawn.started:,} of {spawn.spawned:,}",
            "—",
            "—",
            "all",
            "yes" if spawn.started == spawn.spawned else "**no**",
        ),
        (
            "backlog drained",
            f"{drain.completed:,} of {drain.backlog:,} in {drain.seconds:.1f} s",
            "—",
            "—",
            "all",
            "yes" if drain.completed >= drain.backlog else "**no**",
        ),
        (
            "runner CPU during report_progress (% of a core)",
            fmt(rep.runner_cpu_pct),
            "—",
            "—",
            "—",
            "—",
        ),
        ("runner CPU while draining (% of a core)", fmt(drain.runner_cpu_pct), "—", "—", "—", "—"),
    ]
    out.append(f"""## Runner

One runner process built as the daemon builds it (`runner.daemon.connected_runner`, pool of
concurrency + 3), with `RUNNER_CONCURRENCY={rep.concurrency}` and benchmark task types
registered through `RUNNER_TASK_MODULES=bench.tasks`. Spawn→running is measured in
PostgreSQL: `started_at - created_at` of each row, i.e. from the start of the spawning INSERT
(its commit and NOTIFY included) to the start of the claiming UPDATE, both on the server's
clock; the runner was idle and waiting, and the harness spawned at a steady rate.

{table(runner_rows, "comparison")}

`report_progress` by statements in flight (`RUNNER_PROGRESS_STATEMENTS`; reports made while
one runs leave together in the next, so this is the runner's write concurrency; the default
is {results.reports.statements if results.reports else "—"}):

| statements in flight | report_progress/s | ratio to pgbench | runner CPU (% of a core) |
|---|---|---|---|
{_sweep_rows(results, pg.tps)}

{throttle_figure(getattr(results, "throttled", None))}

{transaction_figure(getattr(results, "transaction_spawns", []))}

## This machine's limits, in the same run

| measure | per second | note |
|---|---|---|
| pgbench single-row UPDATE, {pg.clients} clients | {fmt(pg.tps)} | {latency(pg)} |
| pgbench single-row UPDATE, 1 client | {fmt(pg1.tps)} | {latency(pg1)} |
| redis-benchmark PUBLISH (400 bytes), {pg.clients} clients | {fmt(results.publish_per_s)} | |
""")
    out.append(workspaces.render(getattr(results, "workspaces", None)))
    out.append(_profile_section(results.profiles))
    out.append(_missed(results))
    out.append(_reading(results))
    return "\n".join(out).rstrip() + "\n"


def latency(pgbench: limits.Pgbench) -> str:
    return f"latency {fmt(pgbench.latency_ms, 2)} ms"


def _somaxconn() -> str:
    try:
        return Path("/proc/sys/net/core/somaxconn").read_text().strip()
    except OSError:
        return "unknown"


def throttle_figure(rate: ReportRate | None) -> str:
    """The same reporters under RUNNER_PROGRESS_MIN_INTERVAL: reports a handler may make
    against the rows that cost PostgreSQL (at most tasks / interval a second, plus phases)."""
    if rate is None:
        return "Throttled `report_progress`: not measured in this run."
    ceiling = rate.concurrency / rate.min_interval_s if rate.min_interval_s else float("nan")
    per_row = rate.per_s / rate.written_per_s if rate.written_per_s else float("nan")
    return f"""Throttled `report_progress` (`RUNNER_PROGRESS_MIN_INTERVAL={rate.min_interval_s:g}`,
the default): the same {rate.concurrency} tasks reporting in a tight loop; each task's newest
state is written at most once per interval, so rows written stay near tasks / interval however
fast handlers report.

| reports accepted/s | rows written/s | ceiling (tasks / interval) | reports per row | runner CPU |
|---|---|---|---|---|
| {fmt(rate.per_s)} | {fmt(rate.written_per_s)} | {fmt(ceiling)} | {fmt(per_row)} | \
{fmt(rate.runner_cpu_pct)} % |"""


def transaction_figure(spawns: Sequence[CommitToClaim]) -> str:
    """Commit to claim of tasks spawned inside the application's own transaction."""
    poll_s = Settings().runner_poll_interval_s
    if not spawns:
        return "Spawns in a transaction: not measured in this run."
    rows = "\n".join(
        f"| `{s.driver}` | {s.spawned:,} at {s.rate_per_s:g}/s | {s.claimed:,} | "
        f"{fmt(s.p50_ms, 2)} | {fmt(s.p99_ms, 2)} | {fmt(s.max_ms, 2)} | "
        f"{at_most(s.p99_ms, TARGET_P99_MS, 'p99', 'ms') if s.claimed == s.spawned else '**no**'} |"
        for s in spawns
    )
    return f"""Spawned inside the application's own transaction (`BEGIN`, `praxiom_progress.spawn`,
`COMMIT`, on a connection of the harness's own), while the runner waits: from just before
`COMMIT` (the harness's clock) to the claim's `started_at` (the server's; the same machine),
so the commit is included. The runner is woken by the NOTIFY the commit delivers (its
safety-net poll, `RUNNER_POLL_INTERVAL`, is {poll_s:g} s). Target: p99 ≤ {TARGET_P99_MS:g} ms,
every task claimed.

| driver | spawned | claimed | p50 (ms) | p99 (ms) | max (ms) | met |
|---|---|---|---|---|---|---|
{rows}"""


def _sweep_rows(results: Results, tps: float) -> str:
    return "\n".join(
        f"| {r.statements} | {fmt(r.per_s)} | {ratio(r.per_s, tps)} | {fmt(r.runner_cpu_pct)} |"
        for r in results.report_sweep
    )


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(statuses.items())) or "—"


def _idle_reading(results: Results) -> str:
    ours, naive = results.gateways[OURS].idle, results.gateways[NAIVE].idle
    streams = max((lv.streams for lv in ours.levels if lv.kib_per_stream is not None), default=0)
    text = (
        f"- Idle re-reads: with `SSE_IDLE_TIMEOUT` at 10 s each idle stream of ours re-reads "
        f"its row and re-emits it, so {streams:,} idle streams mean about "
        f"{fmt(streams / 10)} rows/s, which the gateway's idle sweeper reads in one query per "
        "tick (a tenth of the timeout) for all streams due, not one query per stream. "
    )
    if ours.hold_s < 10:
        return text + f"The {ours.hold_s:g} s idle window was too short to see any."
    return text + (
        f"Over {ours.hold_s:g} s the clients saw {fmt(ours.hold_events_per_s)} re-emits/s and "
        f"the gateway used {fmt(ours.hold_cpu_pct)} % of a core doing nothing else (naive "
        f"baseline, which never re-reads: {fmt(naive.hold_cpu_pct)} %). That is the price of "
        "the idle safety net; whether it matters is that figure against the core."
    )


def _coalescing_reading(results: Results) -> str:
    fan = results.gateways[OURS].fan_out
    missing = fan.expected - fan.received
    if missing <= 0:
        return "- Fan-out: every stream got every update."
    text = (
        f"- Fan-out: {missing:,} of {fan.expected:,} updates were skipped (the stream kept "
        "only the newest state). "
    )
    if fan.streams and missing % fan.streams == 0:
        text += (
            f"That is {missing // fan.streams} updates times every one of the {fan.streams:,} "
            "streams: all streams skipped the same updates. That happens when the gateway's "
            "one reader offers an update before the streams have written the previous one, "
            "i.e. the gateway itself fell a publish interval behind, not one slow client."
        )
    return text


def _missed(results: Results) -> str:
    """Each target this run missed: by how much, where the time or memory goes (py-spy above,
    tracemalloc for memory), and what would move it."""
    ours = results.gateways[OURS]
    largest = max(ours.idle.levels, key=lambda lv: lv.streams)
    fan, rep, drain, pg = ours.fan_out, results.reports, results.drain, results.pgbench
    notes: list[str] = []
    if largest.kib_per_stream is not None and largest.kib_per_stream > 14:
        notes.append(
            f"- **Memory per idle stream** ({fmt(largest.kib_per_stream)} KiB at "
            f"{largest.streams:,}, target 14): the floor baseline, which holds no state of its "
            "own, takes about 13.5; what is left of ours after one pinger for every stream "
            "(gateway.keepalive), one middleware instead of five, whose frame a stream does not "
            "keep (it takes its own front-door visit: gateway.front), a handler frame that "
            "keeps no caller or headers, a sleeping stream's future with no callback of its "
            "own (gateway.wakeup), plain sets of open streams and one done callback shared by "
            "every task (gateway.tasks_alive) is, by a tracemalloc count over 2,000 idle "
            "streams, the stream's own state, its watch and its log context on top of "
            "aiohttp's connection, parser and request, which the floor pays too. What would "
            "move it: no middleware at all (~0.27 KiB: the frame aiohttp adds to every "
            "request of an app that has one), and a channel's one stream held without a set "
            "of its own in the dispatcher (~0.2 KiB)."
        )
    if fan.p99_ms > 20:
        per_write_us = fan.server_cpu_pct / 100 / (fan.streams * 20) * 1e6
        notes.append(
            f"- **Fan-out p99** ({fmt(fan.p99_ms)} ms, target 20): the gateway writes each "
            f"update to all {fan.streams:,} sockets from the dispatcher, SSE_DELIVER_CHUNK "
            "of them per turn of the loop (no task woken, the frame encoded once), and is "
            f"busy {fmt(fan.server_cpu_pct)} % of a core; the profile shows most of that in "
            "`_SelectorSocketTransport.write`, the `send()` per socket, about "
            f"{fmt(per_write_us, 1)} µs each, so the last socket gets its frame milliseconds "
            "after the first (the floor baseline, which does only that, misses it too on a "
            "machine this busy: compare its p99 in 'Against the floor'); the rest of the tail is "
            "the load generators and Redis sharing the two cores. What would move it: fewer "
            "watchers per process for one hot task (two gateways halve the pass), or a "
            "faster write path than one Python-level `send()` per socket."
        )
    if rep is not None and pg is not None and rep.per_s < 0.5 * pg.tps:
        notes.append(
            f"- **`report_progress` rate** ({fmt(rep.per_s / pg.tps, 2)} of pgbench, target "
            "0.50): every report made while a statement is in flight goes in the next one "
            "(one call of `praxiom_report_progress`, a PL/pgSQL function the server plans "
            "once per connection, whose rows PostgreSQL updates in place, writing no index "
            "entry); the handlers report again as soon as it commits, and the batch's "
            "publish goes out while the next batch is written. A batch then costs "
            "PostgreSQL's statement with its commit plus the runner's own pass (aiopg "
            "polling for the result, rows made into tasks, each handler's report on its way "
            "down to the next batch; the runner is busy "
            f"{fmt(rep.runner_cpu_pct)} % of a core), one after the other, since every "
            "handler waits on the same statement: two statements in flight, each with half "
            "the reports, cost more CPU per report and were slower here. What would move it: "
            "a driver with less machinery per statement (asyncpg, outside the fixed stack)."
        )
    if drain is not None and drain.per_s < 1000:
        notes.append(
            f"- **No-op tasks per second** ({fmt(drain.per_s)}, target 1,000): claims are "
            "batched, ends go through a group commit (runner.ends), publishes are grouped, "
            "and a finished handler frees its slot while its end is written, so the next "
            f"claim overlaps it; the runner is busy {fmt(drain.runner_cpu_pct)} % of a core, "
            "mostly in the driver, and the rest is waiting for PostgreSQL (compare the "
            "machine's pgbench figure: the ratio to it is the measure that travels). What "
            "would move it: claiming the next batch before the slots are free."
        )
    for spawned in getattr(results, "transaction_spawns", []):
        if spawned.claimed < spawned.spawned or spawned.p99_ms > TARGET_P99_MS:
            notes.append(
                f"- **Commit to claim, `{spawned.driver}`** (p99 {fmt(spawned.p99_ms)} ms, "
                f"{spawned.claimed:,} of {spawned.spawned:,} claimed, target "
                f"{TARGET_P99_MS:g} ms): compare spawn→running above, measured in PostgreSQL "
                "alone; what this adds is the COMMIT's round trip and the harness's own "
                "scheduling, so a miss points at the machine's load or at the claim's "
                "statement, not at the spawn."
            )
    if not notes:
        return ""
    return "## Targets missed, and what would move them\n\n" + "\n".join(notes) + "\n"


def _reading(results: Results) -> str:
    cfg = results.config
    ours, naive = results.gateways[OURS], results.gateways[NAIVE]
    rep = results.reports
    fan = ours.fan_out
    busy = fan.server_cpu_pct + fan.loadgen_cpu_pct + fan.publisher_cpu_pct
    cores = psutil.cpu_count() or 1
    lines = [
        "## Reading it\n",
        f"- Everything shares {cores} cores: in the fan-out the gateway "
        f"({fmt(fan.server_cpu_pct)} %), "
        f"the load generators ({fmt(fan.loadgen_cpu_pct)} %, all {cfg.loadgens} together) and the "
        f"publisher ({fmt(fan.publisher_cpu_pct)} %) used {fmt(busy)} % of the {cores * 100} % "
        "there "
        "is, besides Redis. Near the total, latencies include waiting for a core; the load "
        "generators' share shows how much of the machine the client side took.",
        _idle_reading(results),
        "- The naive baseline has no auth and no database; it pays a Redis connection and a "
        "subscription per stream instead, which is where its memory and its latency under "
        "fan-out go. "
        + " ".join(
            f"At {lv.streams:,} idle streams it was {lv.note}."
            for lv in naive.idle.levels
            if lv.kib_per_stream is None
        ),
        _coalescing_reading(results),
        "- Ratios are praxiom-progress over the comparison: below 1 is better for times, memory "
        "and CPU, above 1 is better for rates.",
    ]
    if rep is not None and results.pgbench is not None:
        lines.append(
            f"- `report_progress` against pgbench: pgbench runs the bare single-row UPDATE "
            f"with {results.pgbench.clients} clients from C, so 1.00 would mean the runner "
            "adds nothing to one UPDATE per report (its PUBLISH, payload and Python included)."
        )
    return "\n".join(lines) + "\n"
