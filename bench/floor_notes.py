"""Why a target read against the floor was missed, and what would move it: the notes under
BENCHMARKS.md's "Against the floor" table.

Each note names the run's own figures; where the time goes comes from py-spy profiles of our
gateway taken on this kind of machine during the same scenarios (`python -m bench --idle`
and `--tails` with `py-spy record` on the gateway's pid), and is stated as shares of its busy
time. A note appears only when its target was missed in the run being rendered.
"""

from __future__ import annotations

import math

from bench.results import GatewayResults
from bench.scenarios import Delivery, IdleLevel


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure as both floor sections print it: thousands grouped, `n/a` when unmeasured."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _added(levels: list[IdleLevel]) -> tuple[IdleLevel, int] | None:
    """The largest level and how many streams it added (levels are cumulative)."""
    if not levels:
        return None
    ordered = sorted(levels, key=lambda lv: lv.streams)
    last = ordered[-1]
    return last, last.streams - (ordered[-2].streams if len(ordered) > 1 else 0)


def _opening(ours: GatewayResults, floor: GatewayResults) -> str | None:
    mine, theirs = _added(ours.idle.levels), _added(floor.idle.levels)
    if mine is None or theirs is None or not theirs[0].open_s:
        return None
    (level, added), (floor_level, floor_added) = mine, theirs
    ratio = level.open_s / floor_level.open_s
    if ratio <= 1.2 or not added or not floor_added:
        return None
    cpu_us = 1e6 * level.open_cpu_s / added
    floor_cpu_us = 1e6 * floor_level.open_cpu_s / floor_added
    if math.isnan(cpu_us) or math.isnan(floor_cpu_us):
        return None
    return (
        f"- **Opening idle streams** ({ratio:.2f}x the floor's time, target 1.2x; "
        f"{fmt(cpu_us, 0)} µs of our CPU per stream against the floor's "
        f"{fmt(floor_cpu_us, 0)}): each of our opens checks the token and the task's status "
        "and version (one batched query), subscribes and waits for Redis to confirm, reads the "
        "payload's columns (a second batched query, so that no update slips between the "
        "snapshot and the subscription) and sends them as the first event, its headers in the "
        "same send; the floor sends headers. In a py-spy profile of 10,000 opens the two "
        "reads were about a seventh of our busy time (half each: aiopg's statement, "
        "psycopg2's typecasting of the row, `Task.from_row`), the first event's write with "
        "the headers a twentieth, preparing the response a twentieth, encoding the first "
        "event a twenty-fifth, and aiohttp's own request handling, which the floor pays too, "
        "most of the rest. What would move it: one statement per open instead of two (the "
        "row cannot be read before the subscription without a window, nor the subscription "
        "made before the authorization), or a driver with less work per statement than "
        "aiopg (outside the fixed stack)."
    )


def _delivery_cpu(ours: Delivery, floor: Delivery) -> str | None:
    mine, theirs = ours.cpu_us_per_event, floor.cpu_us_per_event
    if math.isnan(mine) or math.isnan(theirs) or not theirs or mine <= 1.1 * theirs:
        return None
    return (
        f"- **CPU per delivered event, {ours.tasks:,} tasks x 1** ({fmt(mine)} µs, "
        f"{mine / theirs:.2f}x the floor's {fmt(theirs)}, target 1.1x): the floor parses "
        "the Redis reply and writes the frame, nothing else. Ours reads its subscription "
        "over RESP2, which spares each message redis-py's RESP3 push handling (7.9 against "
        "4.6 µs a message read), and writes the same frame (the "
        "socket writes are about half of its busy time, as they are the floor's) and also "
        f"re-checks every stream's caller each `SSE_IDLE_TIMEOUT` ({ours.tasks // 10:,} a "
        "second here, 50 to a query, a busy stream's without its task's row: about 2 % of "
        "its busy time in a py-spy profile of this scenario), decodes each message to check "
        "its task, version and status (orjson: a third of what `json.loads` cost) and builds "
        "its frame once (`Update.of`, ~2 %), and pings its streams and times its own loop "
        "(the stall ticker's 200 callbacks a second, ~1.5 %). uvloop would take about 8 % "
        "off (docs/scaling.md says why it is not used). The rest is within a shared "
        "two-core machine's run-to-run spread: `python -m bench --tails`, repeated, shows it."
    )


def _against(label: str, ours: float, floor: float, target: float, unit: str) -> str | None:
    """A target read as a value: missed by the floor too (the stack itself cannot meet it in
    one process here), or by us alone (our own work on top is the difference)."""
    if math.isnan(ours) or ours <= target:
        return None
    head = f"- **{label}** ({fmt(ours)} {unit}, target {target:g}): "
    if floor > target:
        return head + (
            f"the floor misses it too ({fmt(floor)} {unit}), so on this machine, with the "
            "load generators on the same cores, our stack cannot reach it in one process "
            "whatever the gateway does on top; what moves it is more processes "
            "(`GATEWAY_PROCESSES`: see every scenario on 1 and 2 processes above), each with a "
            "share of the streams."
        )
    return head + (
        f"the floor meets it ({fmt(floor)} {unit}); the difference is our own work per "
        "event and per open, in the notes here."
    )


def _hot_p99(ours: Delivery, floor: Delivery, target_ms: float = 75) -> str | None:
    """The hot task's tail: when the floor meets it, what differs is how the pass is made."""
    label = f"1 task x {ours.streams:,}: p99"
    if math.isnan(ours.p99_ms) or ours.p99_ms <= target_ms or floor.p99_ms > target_ms:
        return _against(label, ours.p99_ms, floor.p99_ms, target_ms, "ms")
    mine, theirs = ours.cpu_us_per_event, floor.cpu_us_per_event
    return (
        f"- **{label}** ({fmt(ours.p99_ms)} ms, target {target_ms:g}): the floor meets it "
        f"({fmt(floor.p99_ms)} ms). Both write each update to the {ours.streams:,} sockets, "
        "one `send()` each, so the last watcher's latency is the whole pass. Ours used "
        f"{fmt(mine)} µs of CPU per delivered event against the floor's {fmt(theirs)} "
        f"({mine / theirs:.2f}x): per watcher, the stream's version and socket checks before "
        "its write (0.23 µs against 0.09 in a micro-benchmark), and over the window the idle "
        f"sweeper's re-check of every watcher's caller ({ours.streams // 10:,} a second) and "
        "the stall ticker. Its pass yields the loop every SSE_DELIVER_CHUNK (100) "
        "watchers, the floor's never; longer turns did not shorten it (SSE_DELIVER_CHUNK=250 "
        "and 1000: p99 79.3 and 81.1 ms against 86.5 at 100 and the floor's 88.9, in one "
        "`BENCH_TAILS_WATCHERS=5000 BENCH_TAILS_RATE=4 python -m bench --tails` run), and the "
        "floor's own p99 moved 67.5-88.9 ms between runs here: at this size the tail is the "
        "pass's socket writes and the machine's two cores shared with the load generators. "
        "Two processes: 'Every scenario on 1 and 2 gateway processes' above."
    )


def render(ours: GatewayResults, floor: GatewayResults) -> list[str]:
    """The notes for this run's missed targets (none: an empty list)."""
    notes = [_opening(ours, floor), _delivery_cpu(ours.many, floor.many)]
    if ours.hot is not None and floor.hot is not None:
        notes.append(_hot_p99(ours.hot, floor.hot))
    notes.append(
        _against("Storm, all first events", ours.storm.all_ready_s, floor.storm.all_ready_s,
                 1.2, "s")
    )  # fmt: skip
    found = [note for note in notes if note]
    if not found:
        return []
    return ["", "Where a target above is missed:", "", *found]
