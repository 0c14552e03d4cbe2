"""Debian's PgBouncer in transaction pooling mode, started by a test on a port of its own in
front of the test run's PostgreSQL (the shared one, or the one `make test` embeds when
DATABASE_URL is unset), and stopped by the process id it was started with."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2.extensions import parse_dsn

from tests.conftest import free_port
from tests.debian_packages import ensure_installed

BINARY = Path("/usr/sbin/pgbouncer")

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
; aiopg sends `options` (the session's time zone); the server's own zone is UTC here.
ignore_startup_parameters = options,extra_float_digits
max_client_conn = 500
default_pool_size = 10
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


class PgBouncer:
    def __init__(self, database_url: str) -> None:
        ensure_installed([BINARY], ["pgbouncer"])
        self.dir = Path(tempfile.mkdtemp(prefix="praxiom-pgbouncer-"))
        self.dir.chmod(0o755)
        # The run's PostgreSQL: the shared one over TCP, or `make test`'s embedded one, whose
        # URL names a socket directory (`?host=/...`) that only its own user may enter.
        backend = parse_dsn(database_url)
        host, user = backend.get("host") or "127.0.0.1", backend.get("user") or "postgres"
        self.port = free_port()
        self.url = f"postgresql://{user}@127.0.0.1:{self.port}/{backend['dbname']}"
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            CONFIG.format(host=host, port=backend.get("port") or 5432,
                          listen_port=self.port, dir=self.dir)
        )  # fmt: skip
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else ""
            runs_as = owner if owner not in ("", "root") else "postgres"
            self._as_user = ["runuser", "-u", runs_as, "--"]
            for path in self.dir.iterdir():
                shutil.chown(path, runs_as)
            shutil.chown(self.dir, runs_as)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*self._as_user, str(BINARY), str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(self.url).close()
                return
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)
