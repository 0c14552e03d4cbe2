"""The benchmark's sizes, from BENCH_* environment variables (documented in bench/__main__.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name, "").strip()
    return tuple(sorted(int(x) for x in raw.split(",") if x.strip())) if raw else default


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    idle_levels: tuple[int, ...] = (1000, 5000, 10000)
    idle_hold_s: float = 10.0  # one whole SSE_IDLE_TIMEOUT at the largest idle level
    watchers: int = 1000  # 1 task x N watchers
    fanout_rate: float = 20.0  # updates per second to that one task
    hot_watchers: int = 5000  # 1 hot task x N watchers (ours and the floor only) ...
    hot_rate: float = 4.0  # ... at this many updates per second
    tasks: int = 2000  # N tasks x 1 watcher, 1 update per second each
    storm: int = 2000  # streams opened at the same instant
    storm_repeats: int = 3  # storms on 1 and on 2 gateway processes, alternated (bench.processes)
    # Each publishing window: long enough for three idle re-checks of every stream
    # (SSE_IDLE_TIMEOUT, 10 s) and the garbage collections a real load brings.
    seconds: float = 30.0
    backlog: int = 5000  # no-op tasks one runner drains
    spawn_rate: float = 50.0
    spawn_seconds: float = 5.0
    tx_spawns: int = 200  # spawns in the application's own transactions, per driver
    report_seconds: float = 5.0
    loadgens: int = 3
    workspaces: int = 200  # workspace streams, one per workspace ...
    workspace_tasks: int = 50  # ... of this many running tasks each, 1 update/s per task
    naive_max: int = 5000  # streams, hence Redis connections, the naive baseline may open
    profile: bool = False
    quick: bool = False
    knobs: str = ""  # the BENCH_* variables the run was given, as they would be typed

    @property
    def stream_tasks(self) -> int:
        """Distinct running tasks the gateway scenarios need."""
        return max(*self.idle_levels, self.tasks, self.storm, 200)

    @classmethod
    def from_env(cls) -> Config:
        base = cls()
        if _flag("BENCH_QUICK"):
            base = replace(
                base, idle_levels=(200, 500), idle_hold_s=3.0, watchers=200, hot_watchers=500,
                tasks=200,
                storm=200, storm_repeats=1, seconds=3.0, backlog=500, spawn_seconds=2.0,
                report_seconds=2.0, loadgens=2, workspaces=20, quick=True,
            )  # fmt: skip
        return replace(
            base,
            idle_levels=_ints("BENCH_IDLE", base.idle_levels),
            idle_hold_s=_float("BENCH_IDLE_HOLD", base.idle_hold_s),
            watchers=_int("BENCH_WATCHERS", base.watchers),
            hot_watchers=_int("BENCH_HOT_WATCHERS", base.hot_watchers),
            hot_rate=_float("BENCH_HOT_RATE", base.hot_rate),
            tasks=_int("BENCH_TASKS", base.tasks),
            storm=_int("BENCH_STORM", base.storm),
            storm_repeats=max(1, _int("BENCH_STORM_REPEATS", base.storm_repeats)),
            seconds=_float("BENCH_SECONDS", base.seconds),
            backlog=_int("BENCH_BACKLOG", base.backlog),
            loadgens=_int("BENCH_LOADGENS", base.loadgens),
            workspaces=_int("BENCH_WORKSPACES", base.workspaces),
            workspace_tasks=_int("BENCH_WORKSPACE_TASKS", base.workspace_tasks),
            naive_max=_int("BENCH_NAIVE_MAX", base.naive_max),
            tx_spawns=_int("BENCH_TX_SPAWNS", base.tx_spawns),
            profile=_flag("BENCH_PROFILE"),
            knobs=" ".join(
                f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")
            ),
        )
