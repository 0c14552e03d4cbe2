"""ProgressStream's rules that test_progress_stream.py leaves implicit, one test each: what a
stream tells the dispatcher and the sweeper, a held stream, a version jump too far to trust,
wakes that merge or must not be lost, the counters, and the polling loop's edges. (Each was
written against a mutant that survived `make mutation`: see docs/testing.md.)"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from uuid import UUID, uuid4

from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.channels import progress_channel
from praxiom_progress.taskstate.errors import StoreUnavailable
from praxiom_progress.taskstate.models import Task
from tests.conftest import wait_for
from tests.unit.gateway.test_progress_stream import (
    NOW,
    ChunkedResponse,
    Peer,
    RowReader,
    Running,
    Subscription,
    new_stream,
    task_row,
    update,
)


class CheckedReader(RowReader):
    """A RowReader that notes what each read asked for, and fails the reads told to."""

    def __init__(self, *rows: Task, failing: int = 0) -> None:
        super().__init__(*rows)
        self.asked: list[tuple[UUID, bytes]] = []
        self.failing = failing

    async def read(self, task_id: UUID, digest: bytes) -> Task | None:
        self.asked.append((task_id, digest))
        if self.failing:
            self.failing -= 1
            raise StoreUnavailable("PostgreSQL is down")
        return await super().read(task_id, digest)


class NamingSubscription(Subscription):
    """Notes which stream asked (a cluster answers per stream: its channel's shard)."""

    def __init__(self) -> None:
        super().__init__()
        self.askers: set[int] = set()

    def available_for(self, stream: ProgressStream) -> bool:
        self.askers.add(id(stream))
        return super().available_for(stream)


def running(start: Callable[..., Running], stream: ProgressStream, first: Update) -> Running:
    return start(first, stream)


async def until(check: Callable[[], bool]) -> None:
    async def checked() -> bool:
        return check()

    await wait_for(checked, timeout_s=5, interval_s=0.005)


def test_a_stream_names_its_task_channel_and_caller() -> None:
    task_id = uuid4()
    stream = new_stream(task_id=task_id)
    assert stream.task_id == task_id
    assert stream.channel == progress_channel(task_id)
    assert stream.digest == b"digest"


# -- held: access is being re-checked ---------------------------------------------------------


def test_a_held_stream_keeps_the_newest_update_and_wakes_nobody() -> None:
    stream = new_stream()
    stream.hold()
    assert stream.deliver(update(1), NOW) == 0
    assert stream.deliver(update(2), NOW) == -1  # replaced an update not sent yet
    assert stream.take() == update(2)


async def test_a_held_running_stream_sends_nothing_until_released(
    start: Callable[..., Running],
) -> None:
    stream = new_stream()
    started = running(start, stream, update(1))
    await started.settle()
    stream.hold()
    asked = started.dispatcher.asked
    assert stream.deliver(update(2), NOW) == 0
    assert stream.deliver(update(3), NOW) == -1
    stream.wake()  # Redis came or went meanwhile: the stream must stay held, and open
    assert await started.settle() == b""
    assert not started.task.done()
    assert started.dispatcher.asked <= asked + 1
    stream.release()
    assert await started.settle() == update(3).chunk
    assert started.response.frames[-1] == update(3).frame
    stream.release()  # nothing waiting: nothing sent
    assert await started.settle() == b""
    await started.stop()


# -- a version too far ahead to trust ----------------------------------------------------------


async def test_a_jump_beyond_the_limit_is_checked_against_postgresql_first(
    start: Callable[..., Running],
) -> None:
    task_id, stats = uuid4(), StreamStats(suspect_jumps=5)
    access = CheckedReader(task_row(task_id, 7))
    stream = new_stream(access, stats, task_id, sse_max_version_jump=10)
    started = running(start, stream, update(1))
    await started.settle()
    assert stream.deliver(update(50), NOW) == 0  # not sent: a forged or garbled version?
    received = await started.settle()
    assert received.count(b"id: 7\r\n") == 1 and b"id: 50" not in received  # the row's
    assert stats.suspect_jumps == 6 and access.reads == 1
    assert stream.deliver(update(17), NOW) in (0, 1)  # exactly the limit ahead: trusted
    assert (await started.settle()).count(b"id: 17\r\n") == 1
    assert access.reads == 1 and stats.suspect_jumps == 6
    await started.stop()


# -- wakes --------------------------------------------------------------------------------------


async def test_a_wake_while_waiting_answers_true() -> None:
    stream = new_stream()
    waiting = stream.wait(None)
    stream.wake()
    assert await waiting is True


async def test_a_wake_before_the_stream_resumes_is_one_more_look_never_a_lost_one() -> None:
    """The second wake comes before the woken task ran: it is kept for the next wait, which
    returns at once (a look that may find nothing new), then the stream sleeps again. (The
    wakeable keeps no done-callback to merge the two: memory per sleeping stream.)"""
    stream = new_stream()

    async def parked() -> bool:  # as the stream's own task waits
        return await stream.wait(None)

    waiting = asyncio.create_task(parked())
    await asyncio.sleep(0)
    stream.wake()
    stream.wake()
    assert await waiting is True
    assert await stream.wait(0.01) is True
    assert await stream.wait(0.01) is False  # nothing left over after that


async def test_a_wake_just_after_a_timeout_is_not_lost() -> None:
    stream = new_stream()
    waiter = stream.wait(10)

    async def parked() -> bool:  # as the stream's own task waits
        return await waiter

    waiting = asyncio.create_task(parked())
    await asyncio.sleep(0)
    waiter.set_result(False)  # what its timer does when it fires
    stream.wake()  # in the same turn of the loop: the waiter is done already
    assert await waiting is False
    assert await asyncio.wait_for(stream.wait(10), 1) is True  # kept for the next wait


async def test_waiting_leaves_nothing_in_the_loop_s_error_log() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        stream = new_stream()
        assert await stream.wait(0.01) is False
        waiting = stream.wait(10)
        stream.wake()
        assert await waiting is True
        cancelled = stream.wait(None)
        cancelled.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert errors == []


def test_an_idle_re_emit_counts_as_activity() -> None:
    stream = new_stream()
    stream.reemit(update(1), NOW + 5)
    assert not stream.note_checked(NOW + 6, quiet_since=NOW + 4)
    assert stream.note_checked(NOW + 20, quiet_since=NOW + 10)


# -- counters -----------------------------------------------------------------------------------


async def test_each_event_sent_by_the_stream_s_task_is_counted_and_its_lag_recorded(
    peer: Peer,
) -> None:
    stats = StreamStats(events=10)
    stream = new_stream(stats=stats)
    started = Running(stream, peer, False, update(1))
    await started.settle()
    sampled = Update.of(2, b'{"version":2}', False, received=time.monotonic())
    stream.deliver(sampled, NOW)
    await started.settle()
    assert stats.events == 12
    assert stats.lag.count == 1
    await started.stop()


# -- the polling loop's edges -------------------------------------------------------------------


async def test_a_failed_poll_keeps_the_stream_and_every_read_is_for_its_task_and_caller(
    start: Callable[..., Running],
) -> None:
    task_id = uuid4()
    access = CheckedReader(task_row(task_id, 3), failing=1)
    stream = new_stream(access, task_id=task_id, sse_poll_interval_s=0.01)
    started = running(start, stream, update(1))
    await started.settle()
    started.dispatcher.available = False
    stream.wake()
    await until(lambda: access.reads >= 1)  # the second poll read the row
    assert (await started.settle()).count(b"id: 3\r\n") == 1
    assert not started.task.done()
    assert set(access.asked) == {(task_id, b"digest")}
    await started.stop()


async def test_back_from_polling_the_row_is_read_once_and_pub_sub_carries_on(
    start: Callable[..., Running],
) -> None:
    task_id, stats = uuid4(), StreamStats()
    access = CheckedReader(task_row(task_id, 2))
    stream = new_stream(access, stats, task_id, sse_poll_interval_s=0.2, sse_poll_limit=2)
    started = running(start, stream, update(1))
    await started.settle()
    started.dispatcher.available = False
    stream.wake()
    await until(lambda: access.reads == 1)  # one poll (it saw version 2)
    started.dispatcher.available = True
    stream.wake()
    await until(lambda: access.reads == 2)  # the re-read on return
    await started.settle()
    assert stream.overdue_since != math.inf  # live again: the sweeper looks after it
    assert stream.deliver(update(3), NOW) in (0, 1)
    assert (await started.settle()).count(b"id: 3\r\n") == 1
    assert access.reads == 2 and not started.task.done()
    # A second outage gets the whole poll limit again.
    started.dispatcher.available = False
    stream.wake()
    await asyncio.wait_for(started.task, 5)
    assert stats.polls == 3 and stats.poll_limit_closes == 1


async def test_a_polling_stream_that_is_closed_ends_without_another_read(
    start: Callable[..., Running],
) -> None:
    access = CheckedReader(task_row(uuid4(), 2))
    stream = new_stream(access, sse_poll_interval_s=10)
    started = running(start, stream, update(1))
    await started.settle()
    started.dispatcher.available = False
    stream.wake()
    await started.settle()
    stream.close()
    await asyncio.wait_for(started.task, 1)
    assert access.reads == 0


async def test_the_dispatcher_is_asked_about_this_stream(peer: Peer) -> None:
    stream = new_stream(RowReader(), sse_poll_interval_s=0.01)
    dispatcher = NamingSubscription()
    response = ChunkedResponse(peer.transport)
    task = asyncio.create_task(stream.run(update(1), response, peer.transport, dispatcher))
    await until(lambda: dispatcher.asked >= 1)
    dispatcher.available = False
    stream.wake()
    await asyncio.wait_for(task, 1)  # its row is gone: the first poll ends it
    assert dispatcher.asked >= 2 and dispatcher.askers == {id(stream)}


async def test_an_ended_stream_is_not_the_sweeper_s_any_more(
    start: Callable[..., Running],
) -> None:
    stream = new_stream()
    started = running(start, stream, update(1))
    await started.settle()
    stream.deliver(update(2, terminal=True), NOW)
    await asyncio.wait_for(started.task, 1)
    assert stream.overdue_since == math.inf


async def test_poll_limit_closes_add_up_across_streams(start: Callable[..., Running]) -> None:
    stats = StreamStats(poll_limit_closes=4)
    access = RowReader(task_row(uuid4(), 1))
    stream = new_stream(access, stats, sse_poll_interval_s=0.01, sse_poll_limit=1)
    started = running(start, stream, update(1))
    await started.settle()
    started.dispatcher.available = False
    stream.wake()
    await asyncio.wait_for(started.task, 1)
    assert stats.poll_limit_closes == 5
