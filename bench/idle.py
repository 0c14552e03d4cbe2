"""`python -m bench --idle [NAME=VAR=VALUE,VAR=VALUE ...]`: the idle scenario alone, A/B.

A stream's cost to open and to hold, in about a minute a pass: the idle scenario of the
whole bench (BENCH_IDLE levels, 5,000 and 10,000 by default here: KiB per stream from RSS,
and the time to open each level's streams) against each variant of our gateway and the
floor baseline, interleaved, BENCH_ROUNDS times (3 by default), each round's figures read
as ratios to that round's floor. A variant's BENCH_CHECKOUT=/path runs the gateway of
another checkout (a worktree of an earlier commit) with this harness, as in bench/tails.py.
BENCH_IDLE_HOLD defaults to 0 here (no idle window: memory and open time only).
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import replace

from bench import loopstats
from bench.config import Config
from bench.fixtures import Fixture, Publisher, prepare
from bench.scenarios import Idle
from bench.variants import FLOOR, OURS_ARGS, base_env, floor_args, serving, variants
from praxiom_progress.taskstate.db import migrate
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings

DEFAULT_LEVELS = (5000, 10000)


async def one(
    name: str, args: list[str], env: dict[str, str], fixture: Fixture, publisher: Publisher,
    cfg: Config,
) -> Idle:  # fmt: skip
    async with serving(name, args, env, fixture, publisher, cfg) as bench:
        return await bench.idle(list(cfg.idle_levels), None, "", cfg.idle_hold_s)


def line(name: str, idle: Idle, floor: Idle | None) -> str:
    parts = []
    for i, level in enumerate(idle.levels):
        kib, open_s = level.kib_per_stream or float("nan"), level.open_s
        text = f"{level.streams}: {kib:.2f} KiB, open {open_s:.2f} s ({level.open_cpu_s:.2f} s CPU)"
        if floor is not None:
            fl = floor.levels[i]
            text += (
                f" ({kib / (fl.kib_per_stream or 1):.2f}x, {open_s / fl.open_s:.2f}x,"
                f" CPU {level.open_cpu_s / fl.open_cpu_s:.2f}x floor)"
            )
        if level.failed:
            text += f" [{level.failed} failed]"
        parts.append(text)
    held = ""
    if idle.hold_loop is not None:  # BENCH_IDLE_HOLD: the loop while the largest level idles
        held = f"\n    held {idle.hold_s:g} s: {loopstats.describe(idle.hold_loop)}"
    return f"{name}: " + "; ".join(parts) + held


def summary(name: str, rounds: list[tuple[Idle, Idle]]) -> str:
    """Medians over the rounds of the largest level: KiB, open time, and their floor ratios."""
    last = [(ours.levels[-1], floor.levels[-1]) for ours, floor in rounds]
    kib = [o.kib_per_stream or float("nan") for o, _ in last]
    open_s = [o.open_s for o, _ in last]
    kib_x = [(o.kib_per_stream or float("nan")) / (f.kib_per_stream or 1) for o, f in last]
    open_x = [o.open_s / f.open_s for o, f in last]
    cpu_x = [o.open_cpu_s / f.open_cpu_s for o, f in last]
    med = statistics.median
    return (
        f"{name} (median of {len(rounds)}): {med(kib):.2f} KiB ({med(kib_x):.2f}x floor), "
        f"open the last level {med(open_s):.2f} s ({med(open_x):.2f}x floor), its CPU "
        f"{med(cpu_x):.2f}x floor; open ratios {', '.join(f'{x:.2f}' for x in open_x)}, "
        f"CPU ratios {', '.join(f'{x:.2f}' for x in cpu_x)}"
    )


async def run(settings: Settings, cfg: Config, arguments: list[str]) -> list[str]:
    """In the database `settings` names (the bench's own, which the caller drops)."""
    await migrate(settings)
    if "BENCH_IDLE" not in os.environ:
        cfg = replace(cfg, idle_levels=DEFAULT_LEVELS)
    if "BENCH_IDLE_HOLD" not in os.environ:
        cfg = replace(cfg, idle_hold_s=0.0)
    rounds = max(1, int(os.environ.get("BENCH_ROUNDS", "").strip() or 3))
    fixture = await prepare(settings, max(cfg.idle_levels))
    redis = connect_redis(settings.redis_url)
    publisher = Publisher(redis, fixture.payloads)
    env = base_env(settings)
    out: list[str] = [f"idle streams {cfg.idle_levels}, {rounds} rounds, interleaved"]
    per_variant: dict[str, list[tuple[Idle, Idle]]] = {}
    try:
        for r in range(rounds):
            measured: list[tuple[str, Idle]] = []
            for name, extra in variants(arguments):
                print(f"bench: round {r + 1}: {name} {extra}", file=sys.stderr, flush=True)
                measured.append((name, await one(name, OURS_ARGS, dict(env, **extra), fixture,
                                                 publisher, cfg)))  # fmt: skip
            print(f"bench: round {r + 1}: floor", file=sys.stderr, flush=True)
            floor = await one(FLOOR, floor_args(settings), dict(env), fixture, publisher, cfg)
            out.append(f"round {r + 1}")
            for name, idle in measured:
                out.append("  " + line(name, idle, floor))
                per_variant.setdefault(name, []).append((idle, floor))
            out.append("  " + line(FLOOR, floor, None))
            print("\n".join(out[-len(measured) - 2 :]), file=sys.stderr, flush=True)
    finally:
        await redis.aclose()
    return out + [summary(name, rounds_) for name, rounds_ in per_variant.items()]
