"""Several gateway processes on one port: the `gateway` command with GATEWAY_PROCESSES > 1.

Each process is a whole gateway (its own Redis subscription, pools and limits) listening with
SO_REUSEPORT, so the kernel spreads new connections across them and one busy or restarting
process does not hold the others back. The supervisor serves nothing itself. It holds the
port (bound but not listening: the kernel hands connections only to listeners, and no other
program can take the port while a process restarts), starts a process again when one exits,
with a back-off, and on SIGTERM/SIGINT passes SIGTERM on and waits for every process to drain.
Each process reads its stdin from the supervisor, whose end closing (even when it is killed
outright) stops the process too (gateway.server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Mapping, Sequence

from praxiom_progress.taskstate.settings import Settings

log = logging.getLogger("gateway")


def hold_port(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind (without listening) every address `host` names, with SO_REUSEPORT; port 0 picks
    one free port for all. The sockets keep the port for the supervised processes."""
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        ):
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio binds it: the IPv6 address only
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, port


class Supervisor:
    """Keeps `count` processes of `command` running until SIGTERM/SIGINT, then drains them."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        count: int,
        settings: Settings,
        *,
        address: str = "",
    ) -> None:
        self.address = address
        self.command = list(command)
        self.env = dict(env)
        self.count = count
        self.restart_delay_s = settings.gateway_restart_delay_s
        self.restart_max_delay_s = settings.gateway_restart_max_delay_s
        self.stop_grace_s = settings.gateway_stop_grace_s
        self.restarts = 0
        self._stop = asyncio.Event()
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until SIGTERM/SIGINT (or `stop()`), then until every process has exited."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info(
            "%d gateway processes on %s",
            self.count,
            self.address,
            extra={"action": "gateway_supervising", "processes": self.count},
        )
        try:
            keepers = [
                asyncio.create_task(self._keep(index), name=f"gateway-process-{index}")
                for index in range(self.count)
            ]
            await self._stop.wait()
            log.info(
                "stopping: %d gateway processes drain",
                self.count,
                extra={"action": "gateway_stopping"},
            )
            await self._drain(keepers)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _keep(self, index: int) -> None:
        """One process slot: start, wait for the exit, back off, start again."""
        delay = self.restart_delay_s
        while True:
            started = time.monotonic()
            ended = await self._run_once(index)
            if self._stop.is_set():
                return
            if time.monotonic() - started >= self.restart_max_delay_s:
                delay = self.restart_delay_s  # it ran a good while: not a crash loop
            log.warning(
                "gateway process %d %s: starting another in %g s",
                index,
                ended,
                delay,
                extra={"action": "gateway_process_exited"},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            self.restarts += 1
            delay = min(delay * 2, self.restart_max_delay_s)

    async def _run_once(self, index: int) -> str:
        """Start one process and wait for it to end; says how it ended."""
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, stdin=asyncio.subprocess.PIPE
            )
        except OSError as exc:  # out of processes or memory for now: the back-off retries
            return f"could not start ({exc})"
        self._processes[index] = process
        if self._stop.is_set():  # the stop came while it was starting
            process.send_signal(signal.SIGTERM)
        log.info(
            "gateway process %d started (pid %d)",
            index,
            process.pid,
            extra={"action": "gateway_process_started", "pid": process.pid},
        )
        code = await process.wait()
        assert process.stdin is not None
        process.stdin.close()
        return f"(pid {process.pid}) exited with {code}"

    async def _drain(self, keepers: list[asyncio.Task[None]]) -> None:
        """SIGTERM to every process; any still running after the grace is killed."""
        for process in self._processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=self.stop_grace_s)
        for index, process in self._processes.items():
            if process.returncode is None:
                log.warning(
                    "gateway process %d (pid %d) still running after %g s: killed",
                    index,
                    process.pid,
                    self.stop_grace_s,
                    extra={"action": "gateway_process_killed", "pid": process.pid},
                )
                process.kill()
        if late:
            await asyncio.wait(late)
