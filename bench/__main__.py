"""`make bench`: every scenario of issue 5, side by side with a comparison, and BENCHMARKS.md.

Gateway scenarios, each against our gateway (`python -m praxiom_progress.cli.main gateway`, real
settings), the floor baseline (`bench/floor_gateway.py`: the smallest server of our stack, every
figure of ours is read as a ratio to it) and the naive one-subscription-per-connection baseline
(`bench/naive_gateway.py`):
idle streams on distinct running tasks (KiB per stream from RSS), 1 task x N watchers at
20 updates/s, 1 hot task x 5,000 watchers at 4 updates/s (ours and the floor only), N tasks
x 1 watcher at 1 update/s each (every stream opened at the same instant, so their idle
re-checks fall due together in the window), and a reconnect storm of
streams opened at the same instant. Every one of these runs again against our gateway on two
processes (GATEWAY_PROCESSES=2), side by side with one (bench/process_scenarios.py). Our
gateway's loop stalls and garbage collections in each
window come from its own /metrics. The load comes from raw-socket load generators
(`bench/loadgen.py`) whose CPU is reported next to the server's.

Runner scenarios, one real runner process (`bench/runnerproc.py`): report_progress per
second (every report written), the same reporters throttled by RUNNER_PROGRESS_MIN_INTERVAL
(reports accepted against rows written), no-op tasks claimed and completed per second,
spawn-to-running latency, and commit-to-claim of tasks spawned inside an application's own
transaction (`praxiom_progress.spawn` and `spawn_sync`); and in the same run this machine's
limits: pgbench single-row UPDATE and redis-benchmark PUBLISH.

It works in a database of its own, `praxiom_bench` (BENCH_DATABASE names another: two runs at
once on one PostgreSQL need one each), dropped at the end, and needs DATABASE_URL, REDIS_URL,
pgbench and redis-benchmark. Knobs (environment variables):

    BENCH_QUICK=1            a short smoke run (small sizes, 3 s windows), under a minute
    BENCH_IDLE=1000,5000,10000   idle stream counts
    BENCH_IDLE_HOLD=10       seconds the largest idle level is watched (idle re-reads)
    BENCH_WATCHERS=1000      watchers of the one task in the fan-out
    BENCH_HOT_WATCHERS=5000  watchers of the one hot task (ours and the floor only) ...
    BENCH_HOT_RATE=4         ... at this many updates/s
    BENCH_TASKS=2000         tasks in N tasks x 1 watcher
    BENCH_STORM=2000         streams in the reconnect storm
    BENCH_STORM_REPEATS=3    storms on 1 and on 2 gateway processes, alternated (median shown)
    BENCH_SECONDS=30         each publishing window (three idle re-checks of every stream)
    BENCH_BACKLOG=5000       no-op tasks one runner drains
    BENCH_LOADGENS=3         load-generator processes
    BENCH_NAIVE_MAX=5000     most streams (= Redis connections) the naive baseline opens
    BENCH_WORKSPACES=200     workspace streams (one per workspace) in the workspace scenario
    BENCH_WORKSPACE_TASKS=50 running tasks per workspace there, each updated once a second
    BENCH_TX_SPAWNS=200      spawns in the application's own transactions, per driver
    BENCH_DATABASE=praxiom_bench  the database it creates and drops (another name when several
                             runs share one PostgreSQL server)
    BENCH_PROFILE=1          also py-spy the gateway (fan-out) and the runner
                             (report_progress) in extra passes: "Where the time goes"

`python -m bench --throttle` runs the throttling scenario alone and prints its figure.
`python -m bench --transactions` does the same for the spawns in a transaction, and
`python -m bench --workspaces` for the workspace-stream scenario (bench/workspaces.py), and
`python -m bench --tails [NAME=VAR=VALUE,... ...]` for the tail scenario against variants of
our gateway's settings and the floor baseline (bench/tails.py).
`python -m bench --storm` for the reconnect storm on 1 and on 2 gateway processes
(bench/processes.py).
`python -m bench --runner` for the runner's two throughput figures alone (report_progress per
second and no-op tasks drained per second, BENCH_BACKLOG of them) next to pgbench's single-row
UPDATE at the same concurrency: about a minute, for an A/B of a runner change.
`python -m bench --idle [NAME=VAR=VALUE,... ...]` for the idle scenario (memory per stream,
time to open) against variants of our gateway and the floor, interleaved over BENCH_ROUNDS
rounds (bench/idle.py).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

from psycopg2.extensions import make_dsn
from redis.asyncio import Redis

from bench import floor_report, idle, limits, processes, report, tails, workspaces
from bench.config import Config
from bench.fixtures import Fixture, Publisher, prepare
from bench.procs import LoadGens, Server, free_port, start, stop, wait_listening
from bench.results import FLOOR, NAIVE, OUR_GATEWAYS, OURS, OURS_2, GatewayResults, Results
from bench.runnerbench import RunnerBench, runner_figures
from bench.scenarios import GatewayBench
from praxiom_progress.taskstate.db import Database, migrate
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings

T = TypeVar("T")
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "").strip() or "praxiom_bench"
#: The last run's results, for `python -m bench --render` after a change to the report only.
SAVED = report.REPO / ".run" / "bench-results.pickle"


def step(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


async def naive_cap(settings: Settings, cfg: Config) -> tuple[int, str]:
    """How many streams the naive baseline may open: one Redis connection each, on a Redis
    other people use too, and two file descriptors each in one process."""
    redis = connect_redis(settings.redis_url)
    try:
        maxclients = int((await redis.config_get("maxclients")).get("maxclients") or 10000)
    except Exception:
        maxclients = 10000
    finally:
        await redis.aclose()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = min(cfg.naive_max, maxclients // 2, (nofile - 500) // 2)
    note = (
        f"not run: the naive baseline needs one Redis connection per stream; the bench "
        f"opens at most {cap:,} (BENCH_NAIVE_MAX) on a shared Redis with maxclients "
        f"{maxclients:,}"
    )
    return cap, note


async def bench_gateway(
    name: str, server: Server, token: str, fixture: Fixture, publisher: Publisher,
    cfg: Config, cap: int | None, cap_note: str, results: Results,
) -> GatewayResults:  # fmt: skip
    loadgens = await LoadGens.start(cfg.loadgens, server.port, token)
    try:
        bench = GatewayBench(
            server, loadgens, fixture.task_ids, publisher, first_is_event=name in OUR_GATEWAYS
        )
        step(f"{name}: idle streams {cfg.idle_levels}")
        idle = await bench.idle(list(cfg.idle_levels), cap, cap_note, cfg.idle_hold_s)
        step(f"{name}: 1 task x {cfg.watchers} watchers at {cfg.fanout_rate:g}/s")
        one_task = fixture.task_ids[:1]
        fan_out = await bench.deliver(one_task, cfg.watchers, cfg.fanout_rate, cfg.seconds)
        if cfg.profile and name == OURS:
            step(f"{name}: the same fan-out again under py-spy")
            profiled = await bench.deliver(
                one_task, cfg.watchers, cfg.fanout_rate, cfg.seconds,
                profile_what=f"gateway during 1 task x {cfg.watchers} watchers",
            )  # fmt: skip
            if profiled.profile is not None:
                results.profiles.append(profiled.profile)
        hot = None
        if name != NAIVE:  # 5,000 Redis connections: more than a shared Redis should give it
            step(f"{name}: 1 task x {cfg.hot_watchers} watchers at {cfg.hot_rate:g}/s")
            hot = await bench.deliver(one_task, cfg.hot_watchers, cfg.hot_rate, cfg.seconds)
        step(f"{name}: {cfg.tasks} tasks x 1 watcher at 1/s")
        # Opened at once, as tabs are after a deploy: their idle re-checks fall due together
        # inside the window, as they do in production.
        many = await bench.deliver(fixture.task_ids[: cfg.tasks], 1, 1.0, cfg.seconds, at_once=True)
        step(f"{name}: reconnect storm of {cfg.storm}")
        storm = await bench.storm(cfg.storm)
    finally:
        await loadgens.stop()
    return GatewayResults(idle, fan_out, many, storm, hot)


async def measure(settings: Settings, cfg: Config) -> Results:
    results = Results(cfg, date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    started = time.monotonic()
    await migrate(settings)
    step(f"creating {cfg.stream_tasks} running tasks")
    fixture = await prepare(settings, cfg.stream_tasks)
    step(f"creating {cfg.workspaces} workspaces of {cfg.workspace_tasks} running tasks")
    ws_fixture = await workspaces.prepare_workspaces(settings, cfg.workspaces, cfg.workspace_tasks)
    redis = connect_redis(settings.redis_url)
    publisher = Publisher(redis, fixture.payloads)
    cap, results.naive_cap_note = await naive_cap(settings, cfg)
    # One token opens every stream: lift the per-principal and per-process stream caps.
    env = gateway_env(settings)
    try:
        for name in (OURS, OURS_2, FLOOR, NAIVE):
            port = free_port()
            if name in OUR_GATEWAYS:
                args = ["-m", "praxiom_progress.cli.main", "gateway"]
                count = "2" if name == OURS_2 else "1"
                process = start(args, dict(env, GATEWAY_PORT=str(port), GATEWAY_PROCESSES=count))
            else:
                module = "bench.naive_gateway" if name == NAIVE else "bench.floor_gateway"
                args = ["-m", module, "--port", str(port), "--redis-url", settings.redis_url]
                process = start(args, env)
            try:
                await wait_listening(port, process)
                server = Server(name, port, process)
                if name == OURS_2:
                    await processes.wait_all_listening(server, 2)
                token = fixture.token if name in OUR_GATEWAYS else ""
                results.gateways[name] = await bench_gateway(
                    name, server, token, fixture, publisher, cfg,
                    cap if name == NAIVE else None, results.naive_cap_note, results,
                )  # fmt: skip
            finally:
                stop(process)
        step(f"{OURS}: {cfg.workspaces} workspace streams against task streams")
        results.workspaces = await workspaces_on_a_fresh_gateway(env, ws_fixture, redis, cfg)
        if results.workspaces.profile is not None:
            results.profiles.append(results.workspaces.profile)
        step(f"reconnect storm of {cfg.storm} on {processes.PROCESS_COUNTS} gateway processes")
        results.process_storms = await processes.measure(env, fixture, publisher, cfg)
    finally:
        await redis.aclose()
    await workspaces.discard(settings)

    db = await Database.connect(settings, maxsize=10, name="praxiom-bench")
    try:
        runner = RunnerBench(settings, db)
        for statements in (1, 2, 4):  # the write concurrency that suits this machine best
            step(f"runner: report_progress, {settings.runner_concurrency} tasks, "
                 f"{statements} statement(s) in flight")  # fmt: skip
            rate = await runner.report_rate(cfg.report_seconds, statements=statements)
            results.report_sweep.append(rate)
            if statements == settings.runner_progress_statements:
                results.reports = rate
        step(f"runner: report_progress throttled, {settings.runner_concurrency} tasks")
        results.throttled = await runner.throttled(cfg.report_seconds)
        if cfg.profile:
            step("runner: report_progress again under py-spy")
            profiled = await runner.report_rate(cfg.report_seconds, profile=True)
            if profiled.profile is not None:
                results.profiles.append(profiled.profile)
        step(f"runner: draining {cfg.backlog} no-op tasks")
        results.drain = await runner.drain(cfg.backlog)
        step(f"runner: spawn-to-running at {cfg.spawn_rate:g}/s")
        results.spawn = await runner.spawn_latency(cfg.spawn_rate, cfg.spawn_seconds)
        step(f"runner: {cfg.tx_spawns} spawns in transactions, aiopg then psycopg2")
        results.transaction_spawns = await runner.transaction_spawns(cfg.tx_spawns, cfg.spawn_rate)
    finally:
        await db.close()

    step("limits: pgbench and redis-benchmark")
    concurrency = settings.runner_concurrency
    limits.pgbench_init(settings.database_url)
    seconds = 3 if cfg.quick else 5
    results.pgbench = limits.pgbench_update(settings.database_url, concurrency, seconds)
    results.pgbench_one = limits.pgbench_update(settings.database_url, 1, seconds)
    results.publish_per_s = limits.redis_publish_rate(settings.redis_url, concurrency)
    results.seconds = time.monotonic() - started
    return results


async def drop_bench_database(base: Settings) -> None:
    admin = await Database.connect(
        base.replace(database_url=make_dsn(base.database_url, dbname="postgres")), maxsize=1
    )
    try:
        await admin.execute_script(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def bench_database() -> AsyncIterator[Settings]:
    """Settings naming a fresh database of the bench's own (BENCH_DATABASE), dropped after."""
    base = Settings.from_env()
    await drop_bench_database(base)
    try:
        yield base.replace(database_url=make_dsn(base.database_url, dbname=BENCH_DATABASE))
    finally:
        await drop_bench_database(base)


def gateway_env(settings: Settings) -> dict[str, str]:
    """Our gateway's environment: real settings, one token for every stream (the per-principal
    and per-process stream caps lifted)."""
    return dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
                LOG_LEVEL="WARNING", PYTHONPATH=str(report.REPO),
                STREAMS_PER_PRINCIPAL="1000000", GATEWAY_MAX_STREAMS="1000000")  # fmt: skip


async def main() -> None:
    """The whole run, in a database of its own that is dropped at the end."""
    cfg = Config.from_env()
    async with bench_database() as settings:
        results = await measure(settings, cfg)
    SAVED.parent.mkdir(exist_ok=True)
    SAVED.write_bytes(pickle.dumps(results))
    write(results)


async def throttle_only() -> None:
    """The throttling scenario alone, in the bench's own database (a quick check)."""
    cfg = Config.from_env()
    rate = await alone(lambda runner: runner.throttled(cfg.report_seconds))
    print(report.throttle_figure(rate))


async def transactions_only() -> None:
    """The spawns in a transaction alone, in the bench's own database (a quick check)."""
    cfg = Config.from_env()
    spawns = await alone(lambda runner: runner.transaction_spawns(cfg.tx_spawns, cfg.spawn_rate))
    print(report.transaction_figure(spawns))


async def alone(scenario: Callable[[RunnerBench], Awaitable[T]]) -> T:
    """One runner scenario in the bench's own database, dropped afterwards."""
    async with bench_database() as settings:
        await migrate(settings)
        db = await Database.connect(settings, maxsize=10, name="praxiom-bench")
        try:
            return await scenario(RunnerBench(settings, db))
        finally:
            await db.close()


async def workspaces_on_a_fresh_gateway(
    env: dict[str, str], fixture: workspaces.WorkspaceFixture, redis: Redis, cfg: Config
) -> workspaces.WorkspaceLoad:
    """The workspace scenario on a gateway of its own: one that served the other scenarios
    is still handing their memory back, which makes the RSS growth per stream meaningless."""
    port = free_port()
    process = start(
        ["-m", "praxiom_progress.cli.main", "gateway"], dict(env, GATEWAY_PORT=str(port))
    )
    try:
        await wait_listening(port, process)
        return await workspaces.measure(Server(OURS, port, process), fixture, redis, cfg)
    finally:
        stop(process)


async def workspaces_only() -> None:
    """The workspace-stream scenario alone, against our gateway in the bench's database."""
    cfg = Config.from_env()
    async with bench_database() as settings:
        await migrate(settings)
        step(f"creating {cfg.workspaces} workspaces of {cfg.workspace_tasks} running tasks")
        fixture = await workspaces.prepare_workspaces(settings, cfg.workspaces, cfg.workspace_tasks)
        redis = connect_redis(settings.redis_url)
        try:
            step(f"{cfg.workspaces} workspace streams against task streams")
            load = await workspaces_on_a_fresh_gateway(gateway_env(settings), fixture, redis, cfg)
        finally:
            await redis.aclose()
    print(workspaces.render(load))
    if load.profile is not None:
        print(report._profile_section([load.profile]))


async def tails_only(arguments: list[str]) -> None:
    """The tail scenario alone (bench/tails.py), A/B, in the bench's own database."""
    async with bench_database() as settings:
        print("\n".join(await tails.run(settings, Config.from_env(), arguments)))


async def idle_only(arguments: list[str]) -> None:
    """The idle scenario alone (bench/idle.py), A/B, in the bench's own database."""
    async with bench_database() as settings:
        print("\n".join(await idle.run(settings, Config.from_env(), arguments)))


async def storm_only() -> None:
    """The reconnect storm alone, on 1 and on 2 gateway processes, in the bench's database."""
    cfg = Config.from_env()
    async with bench_database() as settings:
        await migrate(settings)
        step(f"creating {cfg.storm} running tasks")
        fixture = await prepare(settings, max(cfg.storm, 200))
        env = gateway_env(settings)
        redis = connect_redis(settings.redis_url)
        try:
            step(f"reconnect storm of {cfg.storm} on {processes.PROCESS_COUNTS} gateway processes")
            storms = await processes.measure(env, fixture, Publisher(redis, fixture.payloads), cfg)
        finally:
            await redis.aclose()
    print(processes.render(storms, cfg))


async def runner_only() -> None:
    """The runner's two throughput figures alone, and pgbench at the runner's concurrency."""
    cfg = Config.from_env()
    async with bench_database() as settings:
        await migrate(settings)
        db = await Database.connect(settings, maxsize=10, name="praxiom-bench")
        try:
            runner = RunnerBench(settings, db)
            step(f"runner: report_progress, {settings.runner_concurrency} tasks")
            rate = await runner.report_rate(cfg.report_seconds)
            step(f"runner: draining {cfg.backlog} no-op tasks")
            drain = await runner.drain(cfg.backlog)
        finally:
            await db.close()
        step("limits: pgbench")
        limits.pgbench_init(settings.database_url)
        pg = limits.pgbench_update(settings.database_url, settings.runner_concurrency, 5)
    print(runner_figures(rate, drain, pg))


def write(results: Results) -> None:
    text = report.render(results)
    floor = floor_report.render(results)
    if floor:  # after the gateway scenarios, before the runner's
        text = text.replace("## Runner\n", floor + "## Runner\n", 1)
    (report.REPO / "BENCHMARKS.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:  # re-render the last run's BENCHMARKS.md, no measuring
        write(pickle.loads(SAVED.read_bytes()))
    elif sys.argv[1:] == ["--throttle"]:
        asyncio.run(throttle_only())
    elif sys.argv[1:] == ["--workspaces"]:
        asyncio.run(workspaces_only())
    elif sys.argv[1:] == ["--transactions"]:
        asyncio.run(transactions_only())
    elif sys.argv[1:2] == ["--tails"]:
        asyncio.run(tails_only(sys.argv[2:]))
    elif sys.argv[1:2] == ["--idle"]:
        asyncio.run(idle_only(sys.argv[2:]))
    elif sys.argv[1:] == ["--storm"]:
        asyncio.run(storm_only())
    elif sys.argv[1:] == ["--runner"]:
        asyncio.run(runner_only())
    else:
        asyncio.run(main())
