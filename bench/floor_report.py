"""BENCHMARKS.md's sections against the floor baseline, and our gateway's event loop.

The floor (`bench/floor_gateway.py`) is what our stack itself can do: aiohttp, aiohttp-sse,
one shared subscription, one-pass writes, no auth, no database. Every figure of ours is read
as a ratio to it, measured in the same run; the loop section lists, per steady-state window,
the stalls and garbage collections our gateway's own `/metrics` recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bench import floor_notes
from bench.loopstats import LoopStats
from bench.results import FLOOR, OURS, GatewayResults, Results
from bench.scenarios import Delivery


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _met(value: float | None, ceiling: float, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "no (not measured)"
    if value <= ceiling:
        return "yes"
    return f"**no**: {floor_notes.fmt(value, 2)}{unit}, {value / ceiling:.1f}x the target"


Row = tuple[str, float | None, float | None, str, Callable[[float | None, float | None], str]]


def _none(_: float | None, __: float | None) -> str:
    return "—"


def _ratio_at_most(limit: float) -> Callable[[float | None, float | None], str]:
    return lambda ours, floor: _met(_ratio(ours, floor), limit, "x")


def _value_at_most(limit: float, unit: str) -> Callable[[float | None, float | None], str]:
    return lambda ours, _: _met(ours, limit, f" {unit}")


def _delivery(
    label: str, ours: Delivery, floor: Delivery, many: bool, p99_ms: float = 20
) -> list[Row]:
    cpu_target = ("≤ 1.1x floor", _ratio_at_most(1.1)) if many else ("—", _none)
    p99_ms = 5 if many else p99_ms
    p99 = (f"≤ {p99_ms:g}", _value_at_most(p99_ms, "ms"))
    top = ("≤ 50", _value_at_most(50, "ms")) if many else ("—", _none)
    return [
        (f"{label}: p50 (ms)", ours.p50_ms, floor.p50_ms, "—", _none),
        (f"{label}: p99 (ms)", ours.p99_ms, floor.p99_ms, *p99),
        (f"{label}: p99.9 (ms)", ours.p999_ms, floor.p999_ms, "—", _none),
        (f"{label}: max (ms)", ours.max_ms, floor.max_ms, *top),
        (f"{label}: server CPU per delivered event (µs)", ours.cpu_us_per_event,
         floor.cpu_us_per_event, *cpu_target),
    ]  # fmt: skip


def _rows(ours: GatewayResults, floor: GatewayResults, largest: int, hot_rate: float) -> list[Row]:
    idle_ours = {lv.streams: lv for lv in ours.idle.levels}.get(largest)
    idle_floor = {lv.streams: lv for lv in floor.idle.levels}.get(largest)
    rows: list[Row] = []
    if idle_ours is not None and idle_floor is not None:
        rows += [
            (f"{largest:,} idle streams: KiB each", idle_ours.kib_per_stream,
             idle_floor.kib_per_stream, "≤ 14", _value_at_most(14, "KiB")),
            (f"{largest:,} idle streams: time to open the last level (s)", idle_ours.open_s,
             idle_floor.open_s, "≤ 1.2x floor", _ratio_at_most(1.2)),
        ]  # fmt: skip
    rows += _delivery(f"1 task x {ours.fan_out.streams:,}", ours.fan_out, floor.fan_out, False)
    if ours.hot is not None and floor.hot is not None:
        rows += _delivery(f"1 task x {ours.hot.streams:,} at {hot_rate:g}/s", ours.hot,
                          floor.hot, False, p99_ms=75)  # fmt: skip
    rows += _delivery(f"{ours.many.tasks:,} tasks x 1", ours.many, floor.many, True)
    rows.append(
        ("storm: all streams had their first event (s)", ours.storm.all_ready_s,
         floor.storm.all_ready_s, "≤ 1.2", _value_at_most(1.2, "s"))
    )  # fmt: skip
    return rows


def _loop_row(window: str, stats: LoopStats | None) -> str:
    if stats is None:
        return f"| {window} | n/a | | | | | | |"
    lo, hi = stats.worst_stall_ms
    own_lo, own_hi = stats.worst_busy_ms
    gcs = [
        f"{stats.gc_count.get(g, 0):,} / {stats.gc_total_ms.get(g, 0.0):.0f} / "
        f"{stats.gc_worst_ms.get(g, (0.0, 0.0))[1]:g}"
        for g in ("0", "1", "2")
    ]
    stalls, own = stats.stalls_over.get(10.0, 0), stats.busy_over.get(10.0, 0)
    if not stalls:
        met = "yes"
    elif not own:  # every long stall was a wait for a core other processes held
        met = f"yes for its own work; **no** counting {stalls:,} waits for a core"
    else:
        met = "**no**"
    return (
        f"| {window} | {stats.stalls_over.get(10.0, 0):,} ({stats.stalls_over.get(50.0, 0):,})"
        f" | {lo:g} to {hi:g} | {stats.busy_over.get(10.0, 0):,} | {own_lo:g} to {own_hi:g} | "
        + " | ".join(gcs)
        + f" | {met} |"
    )


def _idle_hold_row(ours: GatewayResults) -> list[str]:
    """The largest idle level held open: every stream re-read once a timeout, nothing else."""
    hold = getattr(ours.idle, "hold_loop", None)  # (older pickles have none)
    if hold is None:
        return []
    streams = ours.idle.levels[-1].streams
    return [_loop_row(f"{streams:,} idle streams, {ours.idle.hold_s:g} s (idle re-reads)", hold)]


def render(results: Results) -> str:
    """The two sections, or nothing when the run had no floor (an older saved run)."""
    if FLOOR not in results.gateways or OURS not in results.gateways:
        return ""
    ours, floor = results.gateways[OURS], results.gateways[FLOOR]
    lines = [
        "## Against the floor\n",
        "The floor baseline (`bench/floor_gateway.py`) is the smallest server of our stack: "
        "aiohttp and aiohttp-sse, one shared Redis subscription, each message framed once and "
        "written to every stream of its task in one pass, **no auth, no database, no idle "
        "re-reads**. Same scenarios, same load generators, same run; its streams count as "
        "ready when their headers arrive. CPU per delivered event is the server's CPU time over "
        "the publishing window and its drain, divided by the updates the clients received.\n",
        "| measure | praxiom-progress | floor | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    cfg = results.config
    for label, a, b, target, met in _rows(
        ours, floor, max(cfg.idle_levels), getattr(cfg, "hot_rate", 4.0)
    ):
        ratio = _ratio(a, b)
        lines.append(
            f"| {label} | {floor_notes.fmt(a, 2)} | {floor_notes.fmt(b, 2)} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {target} | {met(a, b)} |"
        )
    lines += floor_notes.render(ours, floor)
    lines += [
        "",
        "## Our gateway's event loop in each steady-state window\n",
        "From the gateway's own `/metrics`, scraped before and after each window: "
        "`praxiom_gateway_loop_stall_seconds` (how late a timer due every 5 ms ran), "
        "`praxiom_gateway_loop_stall_cpu_seconds` (of that, CPU the gateway itself used: the "
        "rest it waited for a core this busy machine's other processes held) and "
        "`praxiom_gateway_gc_pause_seconds{generation}`. Bounds are histogram buckets. "
        "Target: no stall over 10 ms in any steady-state window.\n",
        "| window | stalls > 10 ms (> 50 ms) | worst stall (ms) | of its own CPU > 10 ms | "
        "worst own (ms) | GC gen 0: count / total ms / worst ≤ ms | gen 1 | gen 2 | met? |",
        "|---|---|---|---|---|---|---|---|---|",
        *_idle_hold_row(ours),
        _loop_row(f"1 task x {ours.fan_out.streams:,}", ours.fan_out.loop),
        *(
            [_loop_row(f"1 task x {ours.hot.streams:,}", ours.hot.loop)]
            if ours.hot is not None
            else []
        ),
        _loop_row(f"{ours.many.tasks:,} tasks x 1 (opened at once)", ours.many.loop),
        "",
    ]
    windows = (ours.fan_out.loop, ours.hot.loop if ours.hot else None, ours.many.loop)
    if any(w is not None and w.busy_over.get(10.0, 0) for w in windows):
        lines += [
            "Where a stall of its own CPU comes from: in a py-spy profile of the 1 task x 5,000 "
            "window the socket writes of the fan-out are three quarters of the gateway's busy "
            "time, SSE_DELIVER_CHUNK of them to a turn of the loop, and a loopback `send()` "
            "sometimes takes tens of µs, so a turn now and then goes over 10 ms. The chunk's "
            "default went from 250 to 100 for that (own stalls over 10 ms in an A/B: 24 to 1); "
            "a smaller one trades a little CPU per event for shorter turns.",
            "",
        ]
    return "\n".join(lines) + "\n"
