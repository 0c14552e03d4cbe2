"""`python -m bench --tails [NAME=VAR=VALUE,VAR=VALUE ...]`: the tail scenario alone, A/B.

A variant's BENCH_CHECKOUT=/path runs the gateway of another checkout (a worktree of an
earlier commit) with this harness.

BENCH_TASKS streams on as many tasks, all opened at the same instant, then one update a
second (BENCH_TAILS_RATE) to each, from BENCH_TAILS_SETTLE (0.5 s) after the last one
opened, for BENCH_SECONDS (30 s by default: three idle re-checks
of every stream fall inside it), against each variant of our gateway (its environment added
to the real settings) and then against the floor baseline, interleaved in one run. Prints,
per server: publish-to-receive p50 / p99 / p99.9 / max, CPU microseconds per delivered event
and its ratio to the floor's, and our gateway's loop stalls and collections by generation.

BENCH_TAILS_WATCHERS=N runs the fan-out instead: N streams on one task (opened as the fan-out
scenarios of `make bench` open them), BENCH_TAILS_RATE updates a second to it (e.g. N=5000
at 4/s: the hot task).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from bench import loopstats
from bench.config import Config
from bench.fixtures import Fixture, Publisher, prepare
from bench.scenarios import Delivery
from bench.variants import FLOOR, OURS_ARGS, base_env, floor_args, serving, variants
from praxiom_progress.taskstate.db import migrate
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings


async def one(
    name: str, args: list[str], env: dict[str, str], fixture: Fixture, publisher: Publisher,
    cfg: Config,
) -> Delivery:  # fmt: skip
    async with serving(name, args, env, fixture, publisher, cfg) as bench:
        settle_s = float(os.environ.get("BENCH_TAILS_SETTLE", "").strip() or 0.5)
        if watchers():
            return await bench.deliver(
                fixture.task_ids[:1], watchers(), rate(), cfg.seconds, settle_s=settle_s
            )
        return await bench.deliver(
            fixture.task_ids[: cfg.tasks], 1, rate(), cfg.seconds, at_once=True,
            settle_s=settle_s,
        )  # fmt: skip


def rate() -> float:
    """BENCH_TAILS_RATE: updates a second to each task (1 by default; 0.1 at 10,000 streams
    keeps the publishes within what this machine can take beside the streams' re-checks)."""
    return float(os.environ.get("BENCH_TAILS_RATE", "").strip() or 1.0)


def watchers() -> int:
    """BENCH_TAILS_WATCHERS: streams on one task (the fan-out); 0: the N tasks x 1 scenario."""
    return int(os.environ.get("BENCH_TAILS_WATCHERS", "").strip() or 0)


def line(name: str, result: Delivery, floor: Delivery | None) -> str:
    cpu = result.cpu_us_per_event
    vs = f" ({cpu / floor.cpu_us_per_event:.2f}x floor)" if floor is not None else ""
    return (
        f"{name}: {result.received}/{result.expected} delivered, p50 {result.p50_ms:.2f} "
        f"p99 {result.p99_ms:.2f} p99.9 {result.p999_ms:.2f} max {result.max_ms:.1f} ms, "
        f"CPU {cpu:.0f} us/event{vs}, failed opens {result.open_failed}\n"
        f"    {loopstats.describe(result.loop)}"
    )


async def run(settings: Settings, cfg: Config, arguments: list[str]) -> list[str]:
    """In the database `settings` names (the bench's own, which the caller drops)."""
    await migrate(settings)
    cfg = replace(cfg, seconds=cfg.seconds if "BENCH_SECONDS" in os.environ else 30.0)
    fixture = await prepare(settings, cfg.tasks)
    redis = connect_redis(settings.redis_url)
    publisher = Publisher(redis, fixture.payloads)
    env = base_env(settings)
    results: list[tuple[str, Delivery]] = []
    try:
        for name, extra in variants(arguments):
            print(f"bench: {name} {extra}", file=sys.stderr, flush=True)
            results.append((name, await one(name, OURS_ARGS, dict(env, **extra), fixture,
                                            publisher, cfg)))  # fmt: skip
        print("bench: floor", file=sys.stderr, flush=True)
        floor = await one(FLOOR, floor_args(settings), env, fixture, publisher, cfg)
    finally:
        await redis.aclose()
    head = (
        f"1 task x {watchers()} watchers, {rate():g} updates/s for {cfg.seconds:g} s"
        if watchers()
        else f"{cfg.tasks} tasks x 1 watcher, opened at once, {rate():g} update/s each for "
        f"{cfg.seconds:g} s"
    )
    return [head] + [line(n, r, floor) for n, r in results] + [line(FLOOR, floor, None)]
