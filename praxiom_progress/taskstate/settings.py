"""Every setting of both processes, read from the environment in one place.

Each timing constant of the spec is a named setting with the spec's default,
so tests can shrink them without changing behaviour. Durations end in `_s`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from praxiom_progress.taskstate.redaction import hide_password

#: The spec's per-task timeouts; `default` covers every type not named.
DEFAULT_TASK_TIMEOUTS: Mapping[str, float] = MappingProxyType(
    {"validation_kit": 240.0, "fs_research": 600.0, "default": 300.0}
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("json", "text")
_TASK_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise SettingsError(f"{name} must be 0 or more, got {raw!r}")
    return value


def _whole(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be {minimum} or more, got {raw!r}")
    return value


def _positive_int(name: str, raw: str) -> int:
    return _whole(name, raw, 1)


def _non_negative_int(name: str, raw: str) -> int:
    """A whole number where 0 means "not set: work it out" (or "no cap")."""
    return _whole(name, raw, 0)


def _port(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be a port from 0 to 65535, got {raw!r}")
    return value


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} must not be empty")
    return raw.strip()


def parse_task_timeouts(raw: str, name: str = "TASK_TIMEOUTS") -> Mapping[str, float]:
    """Parse `type=seconds,...` over the spec's defaults; `default` covers every other type."""
    timeouts = dict(DEFAULT_TASK_TIMEOUTS)
    seen: set[str] = set()
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        task_type, sep, seconds = item.partition("=")
        task_type = task_type.strip()
        if not sep or not _TASK_TYPE.match(task_type):
            raise SettingsError(
                f"{name} must look like 'validation_kit=240,default=300', got {item!r}"
            )
        if task_type in seen:
            raise SettingsError(f"{name} names {task_type!r} twice")
        seen.add(task_type)
        timeouts[task_type] = _positive_float(f"{name} entry {task_type!r}", seconds.strip())
    return MappingProxyType(timeouts)


def _modules(name: str, raw: str) -> tuple[str, ...]:
    modules = tuple(m.strip() for m in raw.split(",") if m.strip())
    if not modules:
        raise SettingsError(f"{name} must name at least one module")
    return modules


def _database_url(name: str, raw: str) -> str:
    url = _text(name, raw)
    if not (url.startswith(("postgresql://", "postgres://")) or "=" in url):
        raise SettingsError(
            f"{name} must be a postgresql:// URL or a key=value connection string, "
            f"got {hide_password(url)!r}"
        )
    return url


def redis_seed_urls(raw: str) -> tuple[str, ...]:
    """REDIS_URL's nodes: one URL, or (Redis Cluster) a comma-separated list of seed nodes.

    An item after the first may be a bare `host:port`: it takes the first URL's scheme,
    credentials and options, which every node of one cluster shares."""
    first, *rest = (item.strip() for item in raw.split(","))
    urls = [first]
    base = urlsplit(first)
    credentials = base.netloc.rpartition("@")[0]
    for item in rest:
        if "://" in item:
            urls.append(item)
        elif item:
            netloc = f"{credentials}@{item}" if credentials else item
            urls.append(urlunsplit(base._replace(netloc=netloc)))
    return tuple(urls)


def _redis_url(name: str, raw: str) -> str:
    urls = redis_seed_urls(_text(name, raw))
    for url in urls:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"{name} must be a redis://, rediss:// or unix:// URL, got {hide_password(url)!r}"
            )
        try:
            urlsplit(url).port  # noqa: B018 (a bad port raises)
        except ValueError:
            raise SettingsError(f"{name} has a bad port in {hide_password(url)!r}") from None
    return ",".join(urls)


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return level


def _log_format(name: str, raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in _LOG_FORMATS:
        raise SettingsError(f"{name} must be one of {', '.join(_LOG_FORMATS)}, got {raw!r}")
    return fmt


def _task_types(name: str, raw: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    bad = [t for t in types if not _TASK_TYPE.match(t)]
    if not types or bad:
        raise SettingsError(
            f"{name} must list task types like 'validation_kit,research', got {raw!r}"
        )
    return types


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Addresses or networks (`10.0.0.0/8`, `::1`), comma-separated."""
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    for item in items:
        try:
            ip_network(item, strict=False)
        except ValueError as exc:
            raise SettingsError(
                f"{name} must list addresses or networks like '127.0.0.1,10.0.0.0/8', got {item!r}"
            ) from exc
    return items


def _origins(name: str, raw: str) -> tuple[str, ...]:
    """Browser origins (`scheme://host[:port]`), exactly as a browser sends them in `Origin`.

    `*` is refused: a wildcard cannot go with credentials (the session cookie).
    """
    origins: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        try:
            parts.port  # noqa: B018 (a bad port raises)
        except ValueError:
            parts = parts._replace(scheme="")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise SettingsError(
                f"{name} must list origins like 'https://app.example.com', got {item!r}"
            )
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


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
    # The stream (spec: "Timeouts and reconnection").
    sse_poll_interval_s: float = 3.0
    sse_idle_timeout_s: float = 10.0
    sse_poll_limit: int = 200
    sse_ping_interval_s: float = 15.0  # keep-alive comments, well inside nginx's 60 s
    sse_retry_s: float = 2.0  # the reconnect hint, jittered per connection
    # Updates go straight to each stream's socket, past aiohttp (gateway.direct_write);
    # off: every write goes through StreamResponse.write.
    sse_direct_write: bool = True
    # A message more versions ahead of what a stream has sent than this is checked against
    # PostgreSQL before anything is sent (a forged publish must not end or block a stream).
    sse_max_version_jump: int = 10_000
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
    log_level: str = "INFO"
    log_format: str | None = None  # None: JSON for `gateway` / `runner`, text elsewhere

    def __post_init__(self) -> None:
        seeds = self.redis_seed_urls
        if self.redis_cluster and any(url.startswith("unix://") for url in seeds):
            raise SettingsError("REDIS_CLUSTER=1 needs redis:// or rediss:// URLs of nodes")
        if not self.redis_cluster and len(seeds) > 1:
            raise SettingsError("REDIS_URL names several nodes: only REDIS_CLUSTER=1 takes a list")

    @property
    def redis_seed_urls(self) -> tuple[str, ...]:
        """The nodes REDIS_URL names: one, or a cluster's seeds (any that answers will do)."""
        return redis_seed_urls(self.redis_url)

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
    "sse_poll_interval_s": ("SSE_POLL_INTERVAL", _positive_float),
    "sse_idle_timeout_s": ("SSE_IDLE_TIMEOUT", _positive_float),
    "sse_poll_limit": ("SSE_POLL_LIMIT", _positive_int),
    "sse_ping_interval_s": ("SSE_PING_INTERVAL", _positive_float),
    "sse_retry_s": ("SSE_RETRY", _positive_float),
    "sse_direct_write": ("SSE_DIRECT_WRITE", _flag),
    "sse_max_version_jump": ("SSE_MAX_VERSION_JUMP", _positive_int),
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
    "database_timeout_s": ("DATABASE_TIMEOUT", _positive_float),
    "database_pool_size": ("DATABASE_POOL_SIZE", _positive_int),
    "session_cookie_name": ("SESSION_COOKIE_NAME", _text),
    "cors_allowed_origins": ("CORS_ALLOWED_ORIGINS", _origins),
    "streams_per_principal": ("STREAMS_PER_PRINCIPAL", _positive_int),
    "gateway_max_streams": ("GATEWAY_MAX_STREAMS", _positive_int),
    "gateway_max_body_bytes": ("GATEWAY_MAX_BODY_BYTES", _positive_int),
    "spawn_rate_limit": ("SPAWN_RATE_LIMIT", _positive_int),
    "auth_failures_per_minute": ("AUTH_FAILURES_PER_MINUTE", _positive_int),
    "gateway_trusted_proxies": ("GATEWAY_TRUSTED_PROXIES", _networks),
    "gateway_header_timeout_s": ("GATEWAY_HEADER_TIMEOUT", _positive_float),
    "gateway_body_timeout_s": ("GATEWAY_BODY_TIMEOUT", _positive_float),
    "gateway_max_connections": ("GATEWAY_MAX_CONNECTIONS", _non_negative_int),
    "log_level": ("LOG_LEVEL", _log_level),
    "log_format": ("LOG_FORMAT", _log_format),
}


def explicit_servers(environ: Mapping[str, str] | None = None) -> tuple[bool, bool]:
    """Whether DATABASE_URL and REDIS_URL are set: `dev` embeds the servers that are not."""
    env = os.environ if environ is None else environ
    return bool(env.get("DATABASE_URL", "").strip()), bool(env.get("REDIS_URL", "").strip())
