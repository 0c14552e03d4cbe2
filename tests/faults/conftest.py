"""The fault suite's world: its own PostgreSQL and Redis (started once per session, on
private ports), and per test the gateway and runner processes it asks for.

Run with `make test-faults` (pytest's `--confcutdir` keeps tests/conftest.py's hooks,
which would embed or reuse the shared servers, out of this run).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.sse_raw import Follower
from tests.faults.world import FAST_ENV, Faults, Servers, running_servers

__all__ = ["FAST_ENV", "Faults", "Watching", "monotonic_versions", "until"]


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with running_servers() as started:
        yield started


@pytest.fixture
def faults(servers: Servers, tmp_path: Path) -> Iterator[Faults]:
    # A test that failed halfway may have left a server down, or tasks behind.
    if not servers.postgres.running():
        servers.postgres.start()
    if not _redis_up(servers.redis.port):
        servers.redis.start()
    world = Faults(servers, tmp_path)
    with world.connect() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM background_tasks")
    try:
        yield world
    finally:
        world.close()


def _redis_up(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Watching:
    """Followers running in the background, each following its task to its end."""

    def __init__(self, followers: list[Follower]) -> None:
        self.followers = followers
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, *, batch: int = 100, deadline_s: float = 120.0) -> Watching:
        """Start in batches, each batch connected (first event in) before the next."""
        for start in range(0, len(self.followers), batch):
            group = self.followers[start : start + batch]
            self.tasks += [asyncio.create_task(f.follow(deadline_s)) for f in group]
            deadline = time.monotonic() + 30
            while not all(f.events for f in group):
                if time.monotonic() > deadline:
                    raise AssertionError("streams did not open within 30 s")
                await asyncio.sleep(0.05)
        return self

    async def finish(self, timeout_s: float) -> None:
        """Wait for every follower's terminal event; fail listing the ones that never got it."""
        await asyncio.wait(self.tasks, timeout=timeout_s)
        stuck = [
            f for f, t in zip(self.followers, self.tasks, strict=True)
            if not t.done() or t.exception() is not None or not f.finished
        ]  # fmt: skip
        for task in self.tasks:
            task.cancel()
        assert not stuck, (
            f"{len(stuck)} of {len(self.followers)} clients never got a terminal event; "
            f"first: {stuck[0].task_id}, last {stuck[0].last and stuck[0].last.payload['status']}"
            f", connections: {stuck[0].history}, refusals {stuck[0].refusals}"
        )


def monotonic_versions(versions: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(versions))


async def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g}s")
        await asyncio.sleep(0.05)
