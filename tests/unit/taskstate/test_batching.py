"""`taskstate.batching.GroupedCalls` on its own: who goes out together, in what order, what
each caller gets back, and that a failed statement leaves the batcher as it found it."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from praxiom_progress.taskstate.batching import GroupedCalls


class Statements:
    """A `run_many` that records each batch and holds it until the test releases it."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self._fail_on = fail_on
        self._release: list[asyncio.Event] = []
        self.auto = False  # release every batch at once

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        gate = asyncio.Event()
        self._release.append(gate)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if not self.auto:
                await gate.wait()
            if self._fail_on is not None and self._fail_on in items:
                raise LookupError(f"failed on {self._fail_on}")
            return [item.upper() for item in items]
        finally:
            self.running -= 1

    def release(self, index: int) -> None:
        self._release[index].set()

    async def started(self, count: int) -> None:
        """Wait until `count` batches have begun (each step of the loop is one hop)."""
        for _ in range(100):
            if len(self.batches) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{count} batches expected, began {self.batches}")


def first_letter(item: str) -> Hashable:
    return item[0]


async def test_a_lone_call_goes_out_at_once_and_gets_its_own_result() -> None:
    statements = Statements()
    statements.auto = True
    calls = GroupedCalls(statements)
    assert await calls.call("a") == "A"
    assert statements.batches == [["a"]]


async def test_calls_made_while_a_statement_is_in_flight_leave_together_in_order() -> None:
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=1)
    first = asyncio.create_task(calls.call("a"))
    await statements.started(1)
    rest = [asyncio.create_task(calls.call(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert statements.batches == [["a"]]  # one statement in flight at most
    statements.release(0)
    await statements.started(2)
    statements.release(1)
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert statements.batches == [["a"], ["b", "c", "d"]]


async def test_in_flight_bounds_the_statements_running_at_once() -> None:
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=2)
    waiting = [asyncio.create_task(calls.call("a"))]
    await statements.started(1)
    waiting.append(asyncio.create_task(calls.call("b")))
    await statements.started(2)
    waiting += [asyncio.create_task(calls.call(item)) for item in ("c", "d")]
    for _ in range(5):
        await asyncio.sleep(0)
    assert statements.batches == [["a"], ["b"]]  # c and d wait for a free statement
    statements.release(0)
    await statements.started(3)
    statements.release(1)
    statements.release(2)
    assert await asyncio.gather(*waiting) == ["A", "B", "C", "D"]
    assert statements.batches == [["a"], ["b"], ["c", "d"]]
    assert statements.most_running == 2


async def test_max_batch_splits_a_long_queue() -> None:
    statements = Statements()
    statements.auto = True
    calls = GroupedCalls(statements, in_flight=1, max_batch=2)
    results = await asyncio.gather(*(calls.call(item) for item in "abcde"))
    assert results == list("ABCDE")
    assert statements.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_equal_keys_never_share_a_statement_nor_run_at_once() -> None:
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=2, key=first_letter)
    first = asyncio.create_task(calls.call("x1"))
    await statements.started(1)
    later = [asyncio.create_task(calls.call(item)) for item in ("x2", "y1", "x3", "y2")]
    await statements.started(2)
    # x is busy in the first statement: the second takes only y1 (y2 shares its key).
    assert statements.batches == [["x1"], ["y1"]]
    statements.release(0)
    statements.release(1)
    await statements.started(3)
    statements.release(2)
    await statements.started(4)
    statements.release(3)
    assert await first == "X1"
    assert await asyncio.gather(*later) == ["X2", "Y1", "X3", "Y2"]
    assert statements.batches == [["x1"], ["y1"], ["x2", "y2"], ["x3"]]


async def test_a_failed_statement_reaches_every_caller_of_its_batch_and_no_other() -> None:
    statements = Statements(fail_on="b")
    calls = GroupedCalls(statements, in_flight=1, key=first_letter)
    first = asyncio.create_task(calls.call("a1"))
    await statements.started(1)
    batch = [asyncio.create_task(calls.call(item)) for item in ("b", "c")]
    await asyncio.sleep(0)
    statements.release(0)
    await statements.started(2)
    statements.release(1)
    assert await first == "A1"
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert [type(r) for r in results] == [LookupError, LookupError]
    assert str(results[0]) == "failed on b"


async def test_a_caller_that_retries_at_once_after_a_failure_is_answered() -> None:
    """The failed caller runs before the ended flusher's done-callback: its retry must still
    find a flusher (it used to wait for the next caller, forever on a quiet batcher)."""
    statements = Statements(fail_on="a")
    statements.auto = True
    calls = GroupedCalls(statements, in_flight=1)

    async def retry_once() -> str:
        try:
            return await calls.call("a")
        except LookupError:
            return await calls.call("b")

    async with asyncio.timeout(5):
        assert await retry_once() == "B"
    assert statements.batches == [["a"], ["b"]]


async def test_the_batcher_carries_on_after_a_failure_with_the_same_keys() -> None:
    """A failed statement frees its keys: the same batcher takes the same keys again."""
    statements = Statements(fail_on="b1")
    statements.auto = True
    calls = GroupedCalls(statements, in_flight=1, key=first_letter)
    with pytest.raises(LookupError):
        await calls.call("b1")
    async with asyncio.timeout(5):
        assert await calls.call("b2") == "B2"
        assert await asyncio.gather(calls.call("b3"), calls.call("c1")) == ["B3", "C1"]
    assert statements.batches == [["b1"], ["b2"], ["b3", "c1"]]


async def test_a_caller_cancelled_before_its_statement_is_left_out_of_it() -> None:
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=1)
    first = asyncio.create_task(calls.call("a"))
    await statements.started(1)
    gone = asyncio.create_task(calls.call("b"))
    kept = asyncio.create_task(calls.call("c"))
    await asyncio.sleep(0)
    gone.cancel()
    statements.release(0)
    await statements.started(2)
    statements.release(1)
    assert await first == "A" and await kept == "C"
    assert gone.cancelled()
    assert statements.batches == [["a"], ["c"]]


async def test_a_caller_cancelled_mid_statement_does_not_disturb_the_others() -> None:
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=1)
    gone = asyncio.create_task(calls.call("a"))
    kept = asyncio.create_task(calls.call("b"))
    await statements.started(1)
    gone.cancel()
    await asyncio.sleep(0)
    statements.release(0)
    assert await kept == "B"
    assert gone.cancelled()
    assert statements.batches == [["a", "b"]]


async def test_callers_that_call_again_at_once_join_the_next_statement() -> None:
    """After a statement, its callers get a turn before the next batch is taken, so a caller
    that calls again straight away leaves with the others, not in a statement of its own."""
    statements = Statements()
    statements.auto = True
    calls = GroupedCalls(statements, in_flight=1)

    async def twice(item: str) -> list[str]:
        return [await calls.call(item), await calls.call(item + item)]

    results = await asyncio.gather(twice("a"), twice("b"))
    assert results == [["A", "AA"], ["B", "BB"]]
    assert statements.batches == [["a", "b"], ["aa", "bb"]]


async def test_calls_queued_behind_a_failed_statement_are_still_answered() -> None:
    statements = Statements(fail_on="a")
    calls = GroupedCalls(statements, in_flight=1)
    failing = asyncio.create_task(calls.call("a"))
    await statements.started(1)
    queued = asyncio.create_task(calls.call("b"))
    await asyncio.sleep(0)
    statements.release(0)
    await statements.started(2)
    statements.release(1)
    with pytest.raises(LookupError):
        await failing
    assert await queued == "B"


async def test_a_key_stays_busy_while_its_statement_runs_even_when_another_ends() -> None:
    """Two statements in flight: the one that ends first frees only its own keys."""
    statements = Statements()
    calls = GroupedCalls(statements, in_flight=2, key=first_letter)
    x1 = asyncio.create_task(calls.call("x1"))
    await statements.started(1)
    y1 = asyncio.create_task(calls.call("y1"))
    await statements.started(2)
    later = [asyncio.create_task(calls.call(item)) for item in ("x2", "y2")]
    await asyncio.sleep(0)
    statements.release(1)  # y1 ends; x1 is still in its statement
    assert await y1 == "Y1"
    await statements.started(3)
    assert statements.batches[2] == ["y2"]  # not x2: x is still busy
    statements.release(0)
    statements.release(2)
    await statements.started(4)
    statements.release(3)
    assert await x1 == "X1"
    assert await asyncio.gather(*later) == ["X2", "Y2"]


async def test_the_defaults_one_statement_at_a_time_of_at_most_200() -> None:
    statements = Statements()
    calls = GroupedCalls(statements)
    first = asyncio.create_task(calls.call("first"))
    await statements.started(1)
    queued = [asyncio.create_task(calls.call(f"q{i}")) for i in range(201)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(statements.batches) == 1  # a second statement waits for the first
    statements.release(0)
    await statements.started(2)
    assert len(statements.batches[1]) == 200
    statements.release(1)
    await statements.started(3)
    assert statements.batches[2] == ["q200"]
    statements.release(2)
    await first
    await asyncio.gather(*queued)


async def test_a_call_leaves_nothing_in_the_loop_s_error_log() -> None:
    """Each ended flusher is forgotten quietly (no failing done-callback)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        statements = Statements()
        statements.auto = True
        calls = GroupedCalls(statements)
        assert await calls.call("a") == "A"
        for _ in range(5):
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert errors == []
