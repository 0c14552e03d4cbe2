"""A three-node Redis Cluster on private ports, for the cluster-mode tests.

Built with CLUSTER ADDSLOTS and CLUSTER MEET from redis-py rather than
`redis-cli --cluster create`, which waits seconds for the nodes to agree.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from cli.embedded import redis_server_binary

SLOTS = 16384


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedisCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.ports = [_free_port() for _ in range(nodes)]
        # The bus port defaults to port + 10000, past 65535 for a high free port.
        self.bus_ports = {port: _free_port() for port in self.ports}
        self.url = f"redis://127.0.0.1:{self.ports[0]}"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        clients = [redis.Redis(port=port) for port in self.ports]
        try:
            share = SLOTS // len(self.ports)
            for index, client in enumerate(clients):
                last = SLOTS if index == len(clients) - 1 else (index + 1) * share
                client.execute_command("CLUSTER ADDSLOTS", *range(index * share, last))
            for port in self.ports[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port, self.bus_ports[port])
            self._wait_until(lambda: all(_state_ok(c, len(self.ports)) for c in clients))
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        self._procs.clear()

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self._procs[port] = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
             "--cluster-port", str(self.bus_ports[port]),
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
             "--dir", str(node_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_until(lambda: _listening(port))

    @staticmethod
    def _wait_until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("the local Redis Cluster did not come up")
            time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _state_ok(client: redis.Redis, nodes: int) -> bool:
    info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == nodes
