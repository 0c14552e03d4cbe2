"""A Redis Cluster on private ports, for the cluster-mode tests: three primaries, and with
`replicas=1` a replica for each, so a killed primary fails over.

Built with CLUSTER ADDSLOTS, CLUSTER MEET and CLUSTER REPLICATE from redis-py rather than
`redis-cli --cluster create`, which waits seconds for the nodes to agree. The nodes'
`cluster-node-timeout` is short (`node_timeout_ms`, 1 s by default against Redis's 15 s), so a
killed primary is declared failed and replaced within a few seconds.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from praxiom_progress.cli.embedded import redis_server_binary

SLOTS = 16384
#: The nodes' cluster-node-timeout in the tests: a failover takes about two to three of these.
NODE_TIMEOUT_MS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedisCluster:
    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        replicas: int = 0,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> None:
        self.workdir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.ports = [_free_port() for _ in range(nodes)]  # the primaries, as started
        self.replica_ports = [_free_port() for _ in range(nodes * replicas)]
        # The bus port defaults to port + 10000, past 65535 for a high free port.
        self.bus_ports = {port: _free_port() for port in self.all_ports}
        self.url = f"redis://127.0.0.1:{self.ports[0]}"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._killed: set[int] = set()

    @property
    def all_ports(self) -> list[int]:
        return self.ports + self.replica_ports

    def seeds(self, *ports: int) -> str:
        """REDIS_URL naming several seed nodes (comma-separated), in the order given."""
        return ",".join(f"redis://127.0.0.1:{port}" for port in ports)

    def start(self) -> None:
        for port in self.all_ports:
            self._start_node(port)
        clients = {port: redis.Redis(port=port, decode_responses=True) for port in self.all_ports}
        try:
            share = SLOTS // len(self.ports)
            for index, port in enumerate(self.ports):
                last = SLOTS if index == len(self.ports) - 1 else (index + 1) * share
                clients[port].execute_command("CLUSTER ADDSLOTS", *range(index * share, last))
            first = clients[self.ports[0]]
            for port in self.all_ports[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", port, self.bus_ports[port])
            known = len(self.all_ports)
            self._wait_until(lambda: all(_knows(c, known) for c in clients.values()))
            for index, port in enumerate(self.replica_ports):
                primary = self.ports[index % len(self.ports)]
                primary_id = clients[primary].execute_command("CLUSTER MYID")
                clients[port].execute_command("CLUSTER REPLICATE", primary_id)
            self._wait_until(lambda: all(_state_ok(c, known) for c in clients.values()))
            self._wait_until(lambda: all(_replicating(clients[p]) for p in self.replica_ports))
        finally:
            for client in clients.values():
                client.close()

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        self._procs.clear()

    def kill(self, port: int) -> None:
        """`kill -9` one node."""
        proc = self._procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self._killed.add(port)

    def restart(self, port: int) -> None:
        """Start a killed node again; it rejoins from its nodes.conf."""
        self._killed.discard(port)
        self._start_node(port)

    def heal(self, timeout_s: float = 20.0) -> None:
        """Restart every killed node and wait until the cluster is whole again: every node ok,
        every replica (a failed-over primary is one now) in sync with its primary."""
        for port in sorted(self._killed):
            self.restart(port)
        self.wait_until_whole(timeout_s)
        self._wait_until(lambda: self._synced_replicas() == len(self.replica_ports), timeout_s)

    def roles(self) -> dict[int, str]:
        """Each running node's role now: "master" or "slave"."""
        roles = {}
        for port in self._procs:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                roles[port] = str(client.info("replication")["role"])
            finally:
                client.close()
        return roles

    def _synced_replicas(self) -> int:
        synced = 0
        for port in self._procs:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                synced += _replicating(client)
            except redis.RedisError:
                pass
            finally:
                client.close()
        return synced

    def primary_of(self, slot: int, *, via: int) -> int:
        """The port of the primary serving `slot`, as node `via` sees it."""
        port = self._serving(slot, via=via)
        if port is None:
            raise AssertionError(f"no node serves slot {slot}")
        return port

    def _serving(self, slot: int, *, via: int) -> int | None:
        """As `primary_of`; None while node `via` lists nobody for the slot (mid-failover)."""
        client = redis.Redis(port=via, decode_responses=True)
        try:
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        finally:
            client.close()
        return None

    def wait_for_failover(self, dead: int, slot: int, timeout_s: float = 20.0) -> int:
        """Wait until a replica has taken over `slot` from the dead primary on every live
        node's map and the cluster is whole again; the new primary's port."""
        live = [port for port in self.all_ports if port in self._procs]

        def taken_over() -> bool:
            # While a node has marked the primary failed and no replica is promoted yet, it
            # may list nobody for the slot: not taken over yet.
            owners = {self._serving(slot, via=port) for port in live}
            return owners.isdisjoint({None, dead}) and len(owners) == 1 and self._all_ok(live)

        self._wait_until(taken_over, timeout_s)
        return self.primary_of(slot, via=live[0])

    def wait_until_whole(self, timeout_s: float = 20.0) -> None:
        """Wait until every node runs, knows every other and says the cluster is ok."""
        self._wait_until(lambda: self._all_ok(self.all_ports), timeout_s)

    def _all_ok(self, ports: list[int]) -> bool:
        clients = [redis.Redis(port=port, decode_responses=True) for port in ports]
        try:
            return all(_state_ok(c, len(self.all_ports)) for c in clients)
        except redis.RedisError:
            return False
        finally:
            for client in clients:
                client.close()

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self._procs[port] = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
             "--cluster-port", str(self.bus_ports[port]),
             "--cluster-node-timeout", str(self.node_timeout_ms),
             # A replica may always take over, however long it was cut off from its primary.
             "--cluster-replica-validity-factor", "0",
             "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
             "--save", "", "--appendonly", "no", "--dir", str(node_dir)],
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


def _knows(client: redis.Redis, nodes: int) -> bool:
    info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return int(info.get("cluster_known_nodes", 0)) == nodes


def _state_ok(client: redis.Redis, nodes: int) -> bool:
    info = client.execute_command("CLUSTER INFO")
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == nodes


def _replicating(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"
