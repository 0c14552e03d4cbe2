"""Which process is which, from /proc: a process's children, whether they are alive, and how
many of a process's sockets sit on a port in a TCP state (its descriptors against the kernel's
TCP tables). For tests of several gateway processes on one port (GATEWAY_PROCESSES)."""

from __future__ import annotations

import os
from pathlib import Path

TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if os.path.exists(f"/proc/{pid}")}


def sockets_on_port(pid: int, port: int, state: str) -> int:
    """How many of `pid`'s sockets have local port `port` in TCP state `state`."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                count += 1
    return count
