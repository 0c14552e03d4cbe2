"""A private primary and its hot standby, made with `pg_basebackup`, on ports of their own.

Never the machine's shared server: both clusters live in a temporary directory and are
stopped through their own data directories (pg_ctl, by the postmaster's pid file).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extras

from praxiom_progress.taskstate.db import schema_text
from tests.conftest import record_builtin_catalogue
from tests.faults.servers import ThrowawayPostgres, _pg_bin


class Replicated:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.primary = ThrowawayPostgres(workdir / "primary")
        self.standby = ThrowawayPostgres(workdir / "standby")

    def start(self) -> None:
        self.primary.init()
        self.primary.start()
        conn = self.connect(self.primary.url)
        with conn.cursor() as cur:
            cur.execute(schema_text())
            record_builtin_catalogue(cur)
        conn.close()
        # -R: standby.signal and primary_conninfo, so the copy starts as a streaming standby.
        self.primary._run(
            _pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
            "-U", "postgres", "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.standby.start()

    def stop(self) -> None:
        self.standby.destroy()
        self.primary.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def connect(url: str) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        return conn

    def on_primary(self, sql: str, params: dict[str, object] | None = None) -> list[dict]:
        return _run(self.primary.url, sql, params)

    def on_standby(self, sql: str, params: dict[str, object] | None = None) -> list[dict]:
        return _run(self.standby.url, sql, params)

    def pause(self) -> None:
        self.on_standby("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        self.on_standby("SELECT pg_wal_replay_resume()")

    def replayed_all(self) -> bool:
        """Whether the standby has replayed everything the primary has written."""
        (lsn,) = self.on_primary("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        (row,) = self.on_standby(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn, false) AS ok", lsn
        )
        return bool(row["ok"])


def _run(url: str, sql: str, params: dict[str, object] | None) -> list[dict]:
    conn = Replicated.connect(url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


@contextmanager
def replicated(workdir: Path) -> Iterator[Replicated]:
    servers = Replicated(workdir)
    try:
        servers.start()
        yield servers
    except subprocess.CalledProcessError as exc:
        log = servers.primary.log.read_text() if servers.primary.log.exists() else ""
        raise RuntimeError(f"{exc.cmd}: {exc.stderr!r}\nprimary's log:\n{log[-3000:]}") from exc
    finally:
        servers.stop()
