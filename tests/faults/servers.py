"""Throwaway PostgreSQL and Redis on private ports, for the fault suite to kill and restart.

Never the machine's shared servers: each lives in a temporary directory of its own and
is stopped by the process id the suite started it with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import ThrowawayRedis, free_port

__all__ = ["ThrowawayPostgres", "ThrowawayRedis"]

_PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin(tool: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's newest under /usr/lib/postgresql."""
    found = shutil.which(tool)
    if found:
        return found
    versions = sorted(_PG_BIN.glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for directory in versions:
        if (directory / tool).exists():
            return str(directory / tool)
    raise RuntimeError(f"no {tool}: install PostgreSQL's server binaries")


class ThrowawayPostgres:
    """A cluster of our own (initdb, trust auth) on a free port, with its socket in its
    own directory. Run as root, PostgreSQL must run as another user: `postgres`."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            workdir.mkdir(parents=True, exist_ok=True)
            shutil.chown(workdir, "postgres")
            workdir.chmod(0o755)
            for parent in workdir.parents:  # the server must reach its socket directory
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def init(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: what a restart does (rolls back, drops every connection)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)
