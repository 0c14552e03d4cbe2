"""nginx in front of a gateway, for tests: `config/nginx.conf` itself, with only its addresses
(and, where a test says so, its timeouts) substituted, run as the current user with every path
under a directory of the test's own, in the foreground (`daemon off`), stopped by its pid."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import REPO, free_port
from tests.debian_packages import ensure_installed

NGINX = Path("/usr/sbin/nginx")
SHIPPED_CONFIG = REPO / "config" / "nginx.conf"
#: The shipped config's upstream address and listen line, replaced by the test's.
UPSTREAM = "server 127.0.0.1:8080 "
LISTEN = "listen 80;"
#: The SSE location's idle timeout as shipped.
SSE_READ_TIMEOUT = "proxy_read_timeout 1h;"


def ensure_nginx() -> None:
    ensure_installed([NGINX], ["nginx"])


def render(upstream_port: int, listen_port: int, changes: Mapping[str, str] = {}) -> str:
    """The shipped config with the test's ports, and `changes` (old -> new text) applied.

    Every text replaced must occur exactly once, so a change to the shipped file that a
    test depends on fails the test instead of going unnoticed.
    """
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    replacements = {
        UPSTREAM: f"server 127.0.0.1:{upstream_port} ",
        LISTEN: f"listen 127.0.0.1:{listen_port};",
        **changes,
    }
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"config/nginx.conf has {old!r} {count} times, expected once"
        text = text.replace(old, new)
    return text


def _main_config(workdir: Path, site: Path) -> str:
    # Run as root, nginx would hand its workers to `nobody`, who cannot enter tmp_path.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {name}_temp_path {workdir / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\n"
        "worker_processes 1;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {workdir / 'access.log'};\n"
        f"{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


class NginxFront:
    def __init__(self, workdir: Path, upstream_port: int, changes: Mapping[str, str] = {}) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.site = workdir / "praxiom-progress.conf"
        self.site.write_text(render(upstream_port, self.port, changes), encoding="utf-8")
        self.config = workdir / "nginx.conf"
        self.config.write_text(_main_config(workdir, self.site), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self, *extra: str) -> list[str]:
        return [str(NGINX), "-p", str(self.workdir), "-c", str(self.config), "-e", "stderr", *extra]

    def check(self) -> str:
        """`nginx -t` on the config; its output."""
        result = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"nginx -t failed:\n{result.stderr}"
        return result.stderr

    def start(self) -> None:
        self.check()
        self._proc = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self._proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not listen:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error.log)"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # the master stops its workers
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
