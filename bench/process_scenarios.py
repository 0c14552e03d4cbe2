"""BENCHMARKS.md's section of every gateway scenario on 1 and on 2 gateway processes.

The same sequence of scenarios runs against our `gateway` command as deployed by default
(one process) and with `GATEWAY_PROCESSES=2` (two processes on one port, `SO_REUSEPORT`),
one after the other in the same run, with the same load generators; this section puts the
two side by side, as a ratio, so a reader sees what a second process buys in each scenario
(and what it costs in memory). The targets are the one-process figures' (the tables above);
the storm's two-process target is checked in its own interleaved section.
"""

from __future__ import annotations

import math

from bench.floor_notes import fmt
from bench.results import GatewayResults
from bench.scenarios import Delivery

Row = tuple[str, float | None, float | None, int]


def _ratio(two: float | None, one: float | None) -> str:
    if two is None or one is None or not one or math.isnan(two) or math.isnan(one):
        return "n/a"
    return f"{two / one:.2f}"


def _delivery(label: str, one: Delivery | None, two: Delivery | None) -> list[Row]:
    if one is None or two is None:
        return []
    return [
        (f"{label}: p50 (ms)", one.p50_ms, two.p50_ms, 2),
        (f"{label}: p99 (ms)", one.p99_ms, two.p99_ms, 2),
        (f"{label}: max (ms)", one.max_ms, two.max_ms, 1),
        (f"{label}: server CPU per delivered event (µs, all processes)",
         one.cpu_us_per_event, two.cpu_us_per_event, 1),
        (f"{label}: delivered (%)", one.delivered_pct, two.delivered_pct, 1),
    ]  # fmt: skip


def rows(one: GatewayResults, two: GatewayResults, watchers: int, hot: int) -> list[Row]:
    idle_one, idle_two = one.idle.levels[-1], two.idle.levels[-1]
    streams = f"{idle_one.streams:,} idle streams"
    return [
        (f"{streams}: KiB each (all processes' RSS)",
         idle_one.kib_per_stream, idle_two.kib_per_stream, 2),
        (f"{streams}: time to open the last level (s)", idle_one.open_s, idle_two.open_s, 2),
        (f"{streams}: server CPU while idle (% of a core)",
         one.idle.hold_cpu_pct, two.idle.hold_cpu_pct, 1),
        *_delivery(f"1 task x {watchers:,}", one.fan_out, two.fan_out),
        *_delivery(f"1 task x {hot:,}", one.hot, two.hot),
        *_delivery(f"{one.many.tasks:,} tasks x 1", one.many, two.many),
        (f"storm of {one.storm.streams:,}: all streams had their first event (s)",
         one.storm.all_ready_s, two.storm.all_ready_s, 2),
    ]  # fmt: skip


def render(one: GatewayResults, two: GatewayResults, watchers: int, hot: int) -> str:
    lines = [
        "| measure | 1 gateway process | 2 gateway processes | ratio (2 / 1) |",
        "|---|---|---|---|",
    ]
    for name, a, b, digits in rows(one, two, watchers, hot):
        lines.append(f"| {name} | {fmt(a, digits)} | {fmt(b, digits)} | {_ratio(b, a)} |")
    table = "\n".join(lines)
    return f"""## Every scenario on 1 and 2 gateway processes

Each scenario above, run against our `gateway` command as deployed by default (one process:
the figures of the tables above) and then, in the same run with the same load generators,
against a second command with `GATEWAY_PROCESSES=2` (two processes on one port,
`SO_REUSEPORT`, each with its own Redis subscription, pools and limits). Memory and CPU are
the whole process tree's (the supervisor's too). On this machine the two processes share
its two cores with the load generators, Redis and PostgreSQL, so a second process splits
the gateway's own work but adds no core; on a host with a core per process and the clients
elsewhere, that split is what it gains. The kernel spreads one hot task's watchers over both
processes, and each writes every update to the watchers it holds.

{table}
"""
