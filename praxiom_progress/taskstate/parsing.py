"""How each environment variable's text becomes a setting's value: one parser per kind, each
naming the variable in its error, so a bad value stops the process with a line that says
which one and why."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from ipaddress import ip_network
from types import MappingProxyType
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


def _gc_thresholds(name: str, raw: str) -> tuple[int, int, int]:
    """Three whole numbers, as `gc.set_threshold` takes them: "700,10,10"."""
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or int(parts[0]) < 1:
        raise SettingsError(
            f"{name} must be three whole numbers, the first above 0 (e.g. 700,10,10), got {raw!r}"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


#: The most gateway processes GATEWAY_PROCESSES may ask for (a typo must not fork a thousand).
MAX_GATEWAY_PROCESSES = 256


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _processes(name: str, raw: str) -> int:
    """A count of processes, or `auto`: one per core this process may use."""
    if raw.strip().lower() == "auto":
        return cores()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_GATEWAY_PROCESSES:
        raise SettingsError(
            f"{name} must be auto (one per core) or a whole number from 1 to "
            f"{MAX_GATEWAY_PROCESSES}, got {raw!r}"
        )
    return value


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


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """A parser accepting one of `choices`, in any case."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


_log_format = _one_of(_LOG_FORMATS)


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
