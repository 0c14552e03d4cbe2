"""Group commit: calls made while a statement is in flight leave together in the next one.

A lone call goes out at once (no added latency); under load, calls queue behind
the statements in flight and leave together, so the cost per call (a round
trip, a pool checkout, the driver's per-statement work) falls as the load rises.
Each caller still gets its own result, or the exception its statement raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupedCalls(Generic[T, R]):
    def __init__(
        self,
        run_many: Callable[[list[T]], Awaitable[list[R]]],
        *,
        in_flight: int = 1,
        max_batch: int = 200,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        """`run_many` answers a batch in order; `key`: items with equal keys never share a
        statement, nor run at once (they go out one after another, in the order made)."""
        self._run_many = run_many
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._key = key
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._busy: set[Hashable] = set()  # keys in a statement now

    async def call(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._flushers) < self._in_flight:
            flusher = asyncio.create_task(self._flush(), name="grouped-calls")
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)  # if cancelled before it ran
        return await future

    async def _flush(self) -> None:
        try:
            await self._flush_batches()
        finally:
            # Leave the set in the same step as the last (empty) take: a done-callback runs a
            # step later, and a call made in between would find no flusher to take it.
            self._flushers.discard(asyncio.current_task())

    async def _flush_batches(self) -> None:
        while batch := self._take_batch():
            keys = {self._key(item) for item, _ in batch} if self._key is not None else set()
            self._busy |= keys
            try:
                results = await self._run_many([item for item, _ in batch])
            except Exception as exc:  # every caller of this batch sees the statement's failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._busy -= keys
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            await asyncio.sleep(0)  # let those callers call again, into the next batch

    def _take_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        rest: list[tuple[T, asyncio.Future[R]]] = []
        seen = set(self._busy)
        for entry in self._pending:
            item, future = entry
            if future.done():
                continue  # its caller was cancelled before the statement began
            key = self._key(item) if self._key is not None else None
            if len(batch) >= self._max_batch or (key is not None and key in seen):
                rest.append(entry)
                continue
            if key is not None:
                seen.add(key)
            batch.append(entry)
        self._pending = rest
        return batch
