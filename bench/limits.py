"""This machine's own limits, measured in the same run: what the runner is compared against.

pgbench runs in the benchmark's own database (its tables go when the database is dropped);
redis-benchmark publishes on a channel of its own that nobody subscribes to.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psycopg2.extensions import parse_dsn

_UPDATE_SCRIPT = (
    "\\set aid random(1, 100000)\n"
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n"
)


@dataclass
class Pgbench:
    clients: int
    tps: float
    latency_ms: float  # average, as pgbench reports it


def _connection(database_url: str) -> tuple[list[str], str]:
    params = parse_dsn(database_url)
    args = [f"--host={params.get('host', '127.0.0.1')}", f"--port={params.get('port', 5432)}",
            f"--username={params.get('user', 'postgres')}"]  # fmt: skip
    return args, params["dbname"]


def pgbench_init(database_url: str) -> None:
    conn, db = _connection(database_url)
    subprocess.run(["pgbench", *conn, "-i", "-q", "-s", "1", db], capture_output=True, check=True)


def pgbench_update(database_url: str, clients: int, seconds: int) -> Pgbench:
    """Single-row UPDATE transactions per second with `clients` connections."""
    conn, db = _connection(database_url)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "update.sql")
        script.write_text(_UPDATE_SCRIPT)
        out = subprocess.run(
            ["pgbench", *conn, "-n", "-c", str(clients), "-j", str(min(clients, 2)),
             "-T", str(seconds), "-f", str(script), db],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    tps = float(re.findall(r"tps = ([\d.]+)", out)[-1])
    latency = re.findall(r"latency average = ([\d.]+) ms", out)
    return Pgbench(clients, tps, float(latency[-1]) if latency else float("nan"))


def redis_publish_rate(redis_url: str, clients: int, requests: int = 200_000) -> float:
    """PUBLISH of a payload-sized message per second with `clients` connections."""
    out = subprocess.run(
        ["redis-benchmark", "-u", redis_url, "-q", "-n", str(requests), "-c", str(clients),
         "PUBLISH", "praxiom:bench:redis-benchmark", "x" * 400],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.findall(r"([\d.]+) requests per second", out)[-1])
