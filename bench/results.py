"""Everything one run measured, handed from the scenarios to the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import limits
from bench.config import Config
from bench.processes import ProcessStorms
from bench.profile import Profile
from bench.runnerbench import Drain, ReportRate, SpawnLatency
from bench.scenarios import Delivery, Idle, Storm
from bench.transactions import CommitToClaim
from bench.workspaces import WorkspaceLoad

OURS, NAIVE, FLOOR = "praxiom-progress", "naive baseline", "floor baseline"
#: Our gateway command with GATEWAY_PROCESSES=2: every scenario again, on two processes.
OURS_2 = "praxiom-progress, 2 processes"
OUR_GATEWAYS = (OURS, OURS_2)


@dataclass
class GatewayResults:
    idle: Idle
    fan_out: Delivery
    many: Delivery
    storm: Storm
    hot: Delivery | None = None  # 1 task x BENCH_HOT_WATCHERS (not run by the naive baseline)


@dataclass
class Results:
    config: Config
    gateways: dict[str, GatewayResults] = field(default_factory=dict)
    naive_cap_note: str = ""
    reports: ReportRate | None = None  # at the default RUNNER_PROGRESS_STATEMENTS
    report_sweep: list[ReportRate] = field(default_factory=list)  # 1, 2, 4 statements
    throttled: ReportRate | None = None  # at the default RUNNER_PROGRESS_MIN_INTERVAL
    drain: Drain | None = None
    spawn: SpawnLatency | None = None
    # Spawned inside the application's own transaction: spawn (aiopg), spawn_sync (psycopg2).
    transaction_spawns: list[CommitToClaim] = field(default_factory=list)
    pgbench: limits.Pgbench | None = None
    pgbench_one: limits.Pgbench | None = None
    publish_per_s: float = 0.0
    profiles: list[Profile] = field(default_factory=list)
    workspaces: WorkspaceLoad | None = None  # workspace streams against task streams
    process_storms: ProcessStorms | None = None  # the storm on 1 and 2 gateway processes
    seconds: float = 0.0
    date: str = ""  # when the run started, UTC
