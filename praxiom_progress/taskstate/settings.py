"""Every setting of both processes, read from the environment in one place.

Each timing constant of the spec is a named setting with the spec's default,
so tests can shrink them without changing behaviour. Durations end in `_s`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from praxiom_progress.taskstate.parsing import (
    DEFAULT_TASK_TIMEOUTS,
    SettingsError,
    _database_url,
    _flag,
    _gc_thresholds,
    _log_format,
    _log_level,
    _modules,
    _networks,
    _non_negative_float,
    _non_negative_int,
    _origins,
    _port,
    _positive_float,
    _positive_int,
    _processes,
    _redis_url,
    _task_types,
    _text,
    parse_task_timeouts,
    redis_seed_urls,
)
from praxiom_progress.taskstate.redaction import hide_password


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/praxiom"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # REDIS_URL names one or more nodes of a Redis Cluster (comma-separated seeds, any one
    # reachable is enough): sharded pub/sub (SPUBLISH / SSUBSCRIBE).
    redis_cluster: bool = False
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    # Pending connections the kernel queues for the gateway (capped by net.core.somaxconn):
    # aiohttp's 128 drops SYNs when a fleet of browsers reconnects at once after a deploy.
    gateway_backlog: int = 4096
    # Gateway processes the `gateway` command runs on that one port (SO_REUSEPORT), each with
    # its own subscription and limits; `auto`: one per core. A process that exits is started
    # again after GATEWAY_RESTART_DELAY, doubled for each exit in a row up to the maximum (one
    # that lived that long starts over); on SIGTERM all drain, and one still running after
    # GATEWAY_STOP_GRACE is killed.
    gateway_processes: int = 1
    gateway_restart_delay_s: float = 1.0
    gateway_restart_max_delay_s: float = 30.0
    gateway_stop_grace_s: float = 30.0
    # The stream (spec: "Timeouts and reconnection").
    sse_poll_interval_s: float = 3.0
    sse_idle_timeout_s: float = 10.0
    sse_poll_limit: int = 200
    sse_ping_interval_s: float = 15.0  # keep-alive comments, well inside nginx's 60 s
    # A stream whose socket takes nothing of what was written to it for this long is dropped
    # (also the socket's TCP_USER_TIMEOUT): aiohttp-sse's send_timeout.
    sse_send_timeout_s: float = 120.0
    sse_retry_s: float = 2.0  # the reconnect hint, jittered per connection
    # Updates go straight to each stream's socket, past aiohttp (gateway.direct_write);
    # off: every write goes through StreamResponse.write.
    sse_direct_write: bool = True
    # A message more versions ahead of what a stream has sent than this is checked against
    # PostgreSQL before anything is sent (a forged publish must not end or block a stream).
    sse_max_version_jump: int = 10_000
    # The most streams one message is handed to in one turn of the event loop; the rest
    # follow on the next turns, in order (gateway.fanout): a task with thousands of watchers
    # must not hold the loop for the whole fan-out. 250 held it over 10 ms now and then on a
    # two-core machine (a loopback send() can take 40 us); 100 did not (1 task x 5,000 watchers).
    sse_deliver_chunk: int = 100
    # The workspace stream's snapshot: every task not finished, plus those that finished this
    # recently, at most this many (the most recent first).
    sse_workspace_recent_s: float = 60.0
    sse_workspace_max_tasks: int = 500
    # An allow-list of the catalogued task types spawn accepts; empty: every catalogued type.
    task_types: tuple[str, ...] = ()
    # The runner.
    task_timeouts: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TASK_TIMEOUTS)
    runner_concurrency: int = 10
    # report_progress statements in flight at once; each writes every report made meanwhile.
    runner_progress_statements: int = 2
    # A task's progress is written at most this often (the newest state; a new phase and the
    # task's end at once); 0 writes every report.
    runner_progress_min_interval_s: float = 0.25
    # The most tasks one workspace may have running across all runners (0: no cap); claims
    # go to the workspace with the fewest running either way.
    workspace_max_running: int = 0
    runner_heartbeat_interval_s: float = 5.0
    runner_stale_after_s: float = 30.0
    runner_reaper_interval_s: float = 5.0
    runner_poll_interval_s: float = 10.0
    runner_shutdown_grace_s: float = 30.0
    runner_metrics_port: int = 9108
    runner_metrics_host: str = "127.0.0.1"
    runner_task_modules: tuple[str, ...] = ("praxiom_progress.runner.builtin",)
    # The event loop not answering for this long is a stall: logged with the blocking task.
    runner_loop_stall_s: float = 0.1
    # A process-isolated handler's child gets this long after SIGTERM before SIGKILL.
    runner_kill_grace_s: float = 2.0
    # Gateways read (authorize, snapshots, re-reads, lists) from this hot standby while it is
    # no further behind the primary than DATABASE_READ_MAX_LAG, else from DATABASE_URL (the
    # primary), which spawn, cancel, token bookkeeping and the LISTEN always use. None: no
    # standby, every read goes to DATABASE_URL.
    database_read_url: str | None = None
    # A stream's state is re-read within SSE_IDLE_TIMEOUT: must not exceed it (a terminal state
    # the standby had not replayed at the connect is then found by the first re-read).
    database_read_max_lag_s: float = 2.0
    # How often the gateway compares the standby's replayed WAL with the primary's.
    database_read_check_interval_s: float = 0.5
    # Off: spawn and cancel answer 404 and the gateway writes nothing (a SELECT-only role).
    gateway_writes: bool = True
    # A direct connection (not through PgBouncer in transaction pooling) for each process's one
    # LISTEN; None: DATABASE_URL. A LISTEN that does not hear its own probe NOTIFY within
    # DATABASE_LISTEN_PROBE_TIMEOUT is given up (a warning; both processes poll instead) and
    # tried again after DATABASE_LISTEN_RETRY.
    database_listen_url: str | None = None
    database_listen_probe_timeout_s: float = 5.0
    database_listen_retry_s: float = 60.0
    # Both.
    database_timeout_s: float = 30.0
    database_pool_size: int = 10
    session_cookie_name: str = "praxiom_session"
    # Browser origins allowed to call the gateway with credentials; empty: no CORS headers.
    cors_allowed_origins: tuple[str, ...] = ()
    # Limits (gateway, per process): each answers with its status and is counted in /metrics.
    streams_per_principal: int = 50  # 429 over it
    gateway_max_streams: int = 10_000  # 503 when full, so the load balancer tries another
    gateway_max_body_bytes: int = 1024 * 1024  # 413 over it
    spawn_rate_limit: int = 120  # spawns a minute per principal (a burst of as many); 429
    # Requests answered 401 a minute per client address (a burst of as many); past it every
    # request from that address gets 429 before any database lookup.
    auth_failures_per_minute: int = 60
    # A token's last use is written at most this often (each gateway notes the tokens it saw
    # and writes them in one statement per interval), so `token list` is this fresh.
    token_last_used_interval_s: float = 60.0
    # Proxies (addresses or networks) whose X-Forwarded-For names the real client, for the
    # logs and the limits; empty: the peer's address, and the header is ignored.
    gateway_trusted_proxies: tuple[str, ...] = ()
    # Whole request headers must arrive within this long of the connection opening (or of the
    # previous response); also how long an idle keep-alive connection is kept.
    gateway_header_timeout_s: float = 10.0
    # A request's whole body must arrive within this long of its headers, else 408.
    gateway_body_timeout_s: float = 10.0
    # Client connections held at once; past it a new one replaces the oldest that has not
    # sent a request yet. 0: the open-files limit less 128 (gateway.connections).
    gateway_max_connections: int = 0
    # The event loop's health (gateway.loophealth): a timer due this often records how late
    # it ran (praxiom_gateway_loop_stall_seconds).
    gateway_loop_stall_tick_s: float = 0.005
    # Garbage collection (gateway.collection): Python's thresholds by default; each time this
    # many streams have opened, what is alive is frozen out of full collections (0: never);
    # the check for a full collection after many frozen streams closed runs this often.
    gateway_gc_thresholds: tuple[int, int, int] = (700, 10, 10)
    gateway_gc_freeze_after: int = 200
    gateway_gc_freeze_check_s: float = 1.0
    # How long browsers may keep /static/praxiom-progress.js before revalidating it (seconds).
    gateway_static_max_age_s: int = 3600
    log_level: str = "INFO"
    log_format: str | None = None  # None: JSON for `gateway` / `runner`, text elsewhere

    def __post_init__(self) -> None:
        seeds = self.redis_seed_urls
        if self.redis_cluster and any(url.startswith("unix://") for url in seeds):
            raise SettingsError("REDIS_CLUSTER=1 needs redis:// or rediss:// URLs of nodes")
        if not self.redis_cluster and len(seeds) > 1:
            raise SettingsError("REDIS_URL names several nodes: only REDIS_CLUSTER=1 takes a list")
        standby = self.database_read_url is not None
        if standby and self.database_read_max_lag_s > self.sse_idle_timeout_s:
            raise SettingsError(
                f"DATABASE_READ_MAX_LAG ({self.database_read_max_lag_s:g} s) must not exceed "
                f"SSE_IDLE_TIMEOUT ({self.sse_idle_timeout_s:g} s): the idle re-read is what "
                "finds a state the standby had not replayed when a stream connected"
            )

    @property
    def redis_seed_urls(self) -> tuple[str, ...]:
        """The nodes REDIS_URL names: one, or a cluster's seeds (any that answers will do)."""
        return redis_seed_urls(self.redis_url)

    @property
    def runner_progress_publish_within_s(self) -> float:
        """How late a progress report's publish may still go out: its task can be reaped this
        long after the report at the earliest (its last heartbeat may be an interval older),
        and a publish after that could follow the reaper's end."""
        stale, beat = self.runner_stale_after_s, self.runner_heartbeat_interval_s
        return max(stale - beat, beat)

    def timeout_for(self, task_type: str) -> float:
        return self.task_timeouts.get(task_type, self.task_timeouts["default"])

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for attr, (name, parse) in _ENV.items():
            raw = env.get(name)
            if raw is not None and raw.strip() != "":
                values[attr] = parse(name, raw)
        return cls(**values)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["database_url"] = hide_password(self.database_url)
        for name in ("database_read_url", "database_listen_url"):
            if shown[name] is not None:
                shown[name] = hide_password(shown[name])
        shown["redis_url"] = ",".join(hide_password(url) for url in self.redis_seed_urls)
        shown["task_timeouts"] = dict(self.task_timeouts)
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"Settings({inner})"


_ENV: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "database_url": ("DATABASE_URL", _database_url),
    "redis_url": ("REDIS_URL", _redis_url),
    "redis_cluster": ("REDIS_CLUSTER", _flag),
    "gateway_host": ("GATEWAY_HOST", _text),
    "gateway_port": ("GATEWAY_PORT", _port),
    "gateway_backlog": ("GATEWAY_BACKLOG", _positive_int),
    "gateway_processes": ("GATEWAY_PROCESSES", _processes),
    "gateway_restart_delay_s": ("GATEWAY_RESTART_DELAY", _positive_float),
    "gateway_restart_max_delay_s": ("GATEWAY_RESTART_MAX_DELAY", _positive_float),
    "gateway_stop_grace_s": ("GATEWAY_STOP_GRACE", _positive_float),
    "sse_poll_interval_s": ("SSE_POLL_INTERVAL", _positive_float),
    "sse_idle_timeout_s": ("SSE_IDLE_TIMEOUT", _positive_float),
    "sse_poll_limit": ("SSE_POLL_LIMIT", _positive_int),
    "sse_ping_interval_s": ("SSE_PING_INTERVAL", _positive_float),
    "sse_send_timeout_s": ("SSE_SEND_TIMEOUT", _positive_float),
    "sse_retry_s": ("SSE_RETRY", _positive_float),
    "sse_direct_write": ("SSE_DIRECT_WRITE", _flag),
    "sse_max_version_jump": ("SSE_MAX_VERSION_JUMP", _positive_int),
    "sse_deliver_chunk": ("SSE_DELIVER_CHUNK", _positive_int),
    "sse_workspace_recent_s": ("SSE_WORKSPACE_RECENT", _non_negative_float),
    "sse_workspace_max_tasks": ("SSE_WORKSPACE_MAX_TASKS", _positive_int),
    "task_types": ("TASK_TYPES", _task_types),
    "task_timeouts": ("TASK_TIMEOUTS", lambda name, raw: parse_task_timeouts(raw, name)),
    "runner_concurrency": ("RUNNER_CONCURRENCY", _positive_int),
    "runner_progress_statements": ("RUNNER_PROGRESS_STATEMENTS", _positive_int),
    "runner_progress_min_interval_s": ("RUNNER_PROGRESS_MIN_INTERVAL", _non_negative_float),
    "workspace_max_running": ("WORKSPACE_MAX_RUNNING", _non_negative_int),
    "runner_heartbeat_interval_s": ("RUNNER_HEARTBEAT_INTERVAL", _positive_float),
    "runner_stale_after_s": ("RUNNER_STALE_AFTER", _positive_float),
    "runner_reaper_interval_s": ("RUNNER_REAPER_INTERVAL", _positive_float),
    "runner_poll_interval_s": ("RUNNER_POLL_INTERVAL", _positive_float),
    "runner_shutdown_grace_s": ("RUNNER_SHUTDOWN_GRACE", _positive_float),
    "runner_metrics_port": ("RUNNER_METRICS_PORT", _port),
    "runner_metrics_host": ("RUNNER_METRICS_HOST", _text),
    "runner_task_modules": ("RUNNER_TASK_MODULES", _modules),
    "runner_loop_stall_s": ("RUNNER_LOOP_STALL", _positive_float),
    "runner_kill_grace_s": ("RUNNER_KILL_GRACE", _positive_float),
    "database_read_url": ("DATABASE_READ_URL", _database_url),
    "database_read_max_lag_s": ("DATABASE_READ_MAX_LAG", _non_negative_float),
    "database_read_check_interval_s": ("DATABASE_READ_CHECK_INTERVAL", _positive_float),
    "gateway_writes": ("GATEWAY_WRITES", _flag),
    "database_listen_url": ("DATABASE_LISTEN_URL", _database_url),
    "database_listen_probe_timeout_s": ("DATABASE_LISTEN_PROBE_TIMEOUT", _positive_float),
    "database_listen_retry_s": ("DATABASE_LISTEN_RETRY", _positive_float),
    "database_timeout_s": ("DATABASE_TIMEOUT", _positive_float),
    "database_pool_size": ("DATABASE_POOL_SIZE", _positive_int),
    "session_cookie_name": ("SESSION_COOKIE_NAME", _text),
    "cors_allowed_origins": ("CORS_ALLOWED_ORIGINS", _origins),
    "streams_per_principal": ("STREAMS_PER_PRINCIPAL", _positive_int),
    "gateway_max_streams": ("GATEWAY_MAX_STREAMS", _positive_int),
    "gateway_max_body_bytes": ("GATEWAY_MAX_BODY_BYTES", _positive_int),
    "spawn_rate_limit": ("SPAWN_RATE_LIMIT", _positive_int),
    "auth_failures_per_minute": ("AUTH_FAILURES_PER_MINUTE", _positive_int),
    "token_last_used_interval_s": ("TOKEN_LAST_USED_INTERVAL", _positive_float),
    "gateway_trusted_proxies": ("GATEWAY_TRUSTED_PROXIES", _networks),
    "gateway_header_timeout_s": ("GATEWAY_HEADER_TIMEOUT", _positive_float),
    "gateway_body_timeout_s": ("GATEWAY_BODY_TIMEOUT", _positive_float),
    "gateway_max_connections": ("GATEWAY_MAX_CONNECTIONS", _non_negative_int),
    "gateway_loop_stall_tick_s": ("GATEWAY_LOOP_STALL_TICK", _positive_float),
    "gateway_gc_thresholds": ("GATEWAY_GC_THRESHOLDS", _gc_thresholds),
    "gateway_gc_freeze_after": ("GATEWAY_GC_FREEZE_AFTER", _non_negative_int),
    "gateway_gc_freeze_check_s": ("GATEWAY_GC_FREEZE_CHECK", _positive_float),
    "gateway_static_max_age_s": ("GATEWAY_STATIC_MAX_AGE", _positive_int),
    "log_level": ("LOG_LEVEL", _log_level),
    "log_format": ("LOG_FORMAT", _log_format),
}


def explicit_servers(environ: Mapping[str, str] | None = None) -> tuple[bool, bool]:
    """Whether DATABASE_URL and REDIS_URL are set: `dev` embeds the servers that are not."""
    env = os.environ if environ is None else environ
    return bool(env.get("DATABASE_URL", "").strip()), bool(env.get("REDIS_URL", "").strip())
