"""`ProgressDispatcher.offer`, the hot path, on its own: what it counts, logs and hands over.

The dispatcher is never started (no Redis needed): `watch` then only registers a stream, and
the tests call `offer` as the reader would with a message from Redis. The streams write to a
transport that records what it was given, or to none (their updates then wait in the mailbox).
"""

from __future__ import annotations

import json
import logging
import time
from uuid import UUID, uuid4

import pytest

from praxiom_progress.gateway.dispatcher import ProgressDispatcher
from praxiom_progress.gateway.frames import Update
from praxiom_progress.gateway.lag import LagHistogram, LagSampler
from praxiom_progress.gateway.stream import ProgressStream, StreamStats
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings


class Transport:
    """A socket that takes everything at once (buffered > 0: one still sending)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Stream(ProgressStream):
    """A stream that never runs; it records each update handed to it."""

    def __init__(self, task_id: UUID, transport: Transport | None = None) -> None:
        super().__init__(task_id, b"digest", None, Settings(), StreamStats())  # type: ignore[arg-type]
        self._transport = transport  # type: ignore[assignment]  # what `run` sets while live
        self.updates: list[Update] = []

    def deliver(self, update: Update, now: float, *, again: bool = False) -> int:
        self.updates.append(update)
        return super().deliver(update, now, again=again)


def payload(task_id: UUID, version: int, status: str = "running") -> bytes:
    return json.dumps({"id": str(task_id), "version": version, "status": status}).encode()


@pytest.fixture
def dispatcher() -> ProgressDispatcher:
    return ProgressDispatcher(connect_redis("redis://127.0.0.1:1/0"))  # never connects


async def test_each_stream_counts_as_written_left_in_its_mailbox_or_coalesced(
    dispatcher: ProgressDispatcher,
) -> None:
    task_id = uuid4()
    fast, other, slow, slower = Transport(), Transport(), Transport(), Transport()
    transports = [fast, other, slow, slower]
    streams = [Stream(task_id, transport) for transport in transports]
    for stream in streams:
        await dispatcher.watch(stream)
    channel = streams[0].channel
    dispatcher.offer(channel, payload(task_id, 2))
    assert (dispatcher.stats.delivered, dispatcher.stats.written) == (4, 4)
    assert all(t.written == [streams[0].updates[0].chunk] for t in transports)
    slow.buffered = slower.buffered = 1  # those clients are still reading: updates wait
    dispatcher.offer(channel, payload(task_id, 3))
    stats = dispatcher.stats
    assert (stats.delivered, stats.written, stats.coalesced) == (8, 6, 0)
    dispatcher.offer(channel, payload(task_id, 4))  # replaces 3, never sent, in both
    dispatcher.offer(channel, payload(task_id, 5))  # replaces 4
    assert (stats.delivered, stats.written, stats.coalesced) == (16, 10, 4)
    assert len(fast.written) == 4 and len(slow.written) == len(slower.written) == 1
    assert streams[2].take() is streams[2].updates[-1]  # the newest, 5, is what it sends next


async def test_a_stream_is_handed_the_time_and_its_task(dispatcher: ProgressDispatcher) -> None:
    """The idle sweeper reads the arrival time as the stream's last activity; a workspace's
    streams read the task an update belongs to."""
    task_id = uuid4()
    stream = Stream(task_id, Transport())
    await dispatcher.watch(stream)
    before = time.monotonic()
    dispatcher.offer(stream.channel, payload(task_id, 2))
    assert before <= stream._last_activity <= time.monotonic()
    (update,) = stream.updates
    assert update.task_id == str(task_id) and update.version == 2 and not update.terminal


async def test_a_sampled_message_records_its_lag_once_written() -> None:
    lag = LagHistogram()
    dispatcher = ProgressDispatcher(connect_redis("redis://127.0.0.1:1/0"), lag=lag)
    dispatcher.lag_sampler = LagSampler(interval_s=3600)  # the first message only
    task_id = uuid4()
    unwritten = Stream(uuid4())  # no transport: its update waits for its task
    await dispatcher.watch(unwritten)
    dispatcher.offer(unwritten.channel, payload(unwritten.task_id, 2))
    assert unwritten.updates[0].received > 0 and lag.count == 0  # sampled, nothing written
    stream = Stream(task_id, Transport())
    await dispatcher.watch(stream)
    dispatcher.lag_sampler = LagSampler(interval_s=3600)
    dispatcher.offer(stream.channel, payload(task_id, 2))
    assert stream.updates[0].received > 0 and lag.count == 1
    dispatcher.offer(stream.channel, payload(task_id, 3))  # not sampled: not recorded
    assert stream.updates[1].received == 0.0 and lag.count == 1


async def test_messages_for_another_task_are_dropped_counted_and_logged(
    dispatcher: ProgressDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    stream = Stream(uuid4(), Transport())
    await dispatcher.watch(stream)
    with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
        dispatcher.offer(stream.channel, payload(uuid4(), 2))
        dispatcher.offer(stream.channel, payload(uuid4(), 3))
    assert stream.updates == [] and dispatcher.stats.mismatched == 2
    assert dispatcher.stats.delivered == 0
    messages = [(r.getMessage(), getattr(r, "action", None)) for r in caplog.records]
    expected = (f"dropped a message on {stream.channel} for another task", "message_mismatched")
    assert messages == [expected, expected]


@pytest.mark.parametrize(
    "template",
    ["not json", '{"version": 2}', "[1]", '{"id": "%s", "status": "running"}',
     '{"id": "%s", "version": "two", "status": "running"}', '{"id": "%s", "version": 2}'],
)  # fmt: skip
async def test_undecodable_messages_are_dropped_counted_and_logged(
    dispatcher: ProgressDispatcher, caplog: pytest.LogCaptureFixture, template: str
) -> None:
    stream = Stream(uuid4(), Transport())
    await dispatcher.watch(stream)
    data = (template % stream.task_id if "%s" in template else template).encode()
    with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
        dispatcher.offer(stream.channel, data)
        dispatcher.offer(stream.channel, data)
    assert stream.updates == [] and dispatcher.stats.undecodable == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"ignored an undecodable message on {stream.channel}"
    ] * 2


async def test_a_message_nobody_watches_is_neither_decoded_nor_counted(
    dispatcher: ProgressDispatcher,
) -> None:
    dispatcher.offer("praxiom:task:nobody", b"not json")
    assert dispatcher.stats == type(dispatcher.stats)()


async def test_a_message_from_redis_is_offered_whatever_its_type_of_text(
    dispatcher: ProgressDispatcher,
) -> None:
    """redis-py hands bytes (the gateway's clients do not decode), but str must work too."""
    stream = Stream(uuid4(), Transport())
    await dispatcher.watch(stream)
    data = payload(stream.task_id, 2)
    dispatcher._handle({"type": "message", "channel": stream.channel.encode(), "data": data})
    dispatcher._handle({"type": "smessage", "channel": stream.channel, "data": data.decode()})
    assert [u.version for u in stream.updates] == [2, 2]
    assert stream.updates[0].chunk == stream.updates[1].chunk
    assert dispatcher.stats.messages == 2 and dispatcher.stats.written == 1


async def test_a_shard_dropping_a_watched_channel_is_reported_and_nothing_else() -> None:
    """A cluster node sends SUNSUBSCRIBE when the channel's slot moved away: the cluster
    then moves the channel's streams (gateway.cluster). Our own unsubscribes, of channels
    nobody watches any more, and other kinds of message are not such news."""
    dropped: list[str] = []
    dispatcher = ProgressDispatcher(
        connect_redis("redis://127.0.0.1:1/0"), sharded=True, on_dropped=dropped.append
    )
    stream = Stream(uuid4(), Transport())
    await dispatcher.watch(stream)
    gone = Stream(uuid4())
    for kind, channel in [("sunsubscribe", gone.channel), ("unsubscribe", stream.channel)]:
        dispatcher._handle({"type": kind, "channel": channel.encode(), "data": 0})
    assert dropped == []
    data = payload(stream.task_id, 2)
    dispatcher._handle({"type": "smessage", "channel": stream.channel.encode(), "data": data})
    assert dropped == [] and len(stream.updates) == 1
    dispatcher._handle({"type": "sunsubscribe", "channel": stream.channel.encode(), "data": 0})
    assert dropped == [stream.channel] and len(stream.updates) == 1
    assert dispatcher.stats.messages == 1


async def test_a_fan_out_over_several_turns_records_its_lag_once_and_only_if_written() -> None:
    """The lag is the last stream's: recorded when the last chunk is handed over, if any
    stream of any chunk was written at once."""
    lag = LagHistogram()
    dispatcher = ProgressDispatcher(connect_redis("redis://127.0.0.1:1/0"), chunk=2, lag=lag)
    dispatcher.lag_sampler = LagSampler(interval_s=0)  # every message sampled
    task_id = uuid4()
    writable = [Stream(task_id, Transport()) for _ in range(2)]
    waiting = [Stream(task_id) for _ in range(3)]  # no transport: nothing written at once
    for stream in [*writable, *waiting]:
        await dispatcher.watch(stream)
    channel = writable[0].channel
    dispatcher.offer(channel, payload(task_id, 2))
    await dispatcher._fanout.drained()
    assert lag.count == 1
    for stream in writable:  # now none is written at once, in any chunk
        dispatcher.unwatch(stream)
    dispatcher.offer(channel, payload(task_id, 3))
    await dispatcher._fanout.drained()
    assert lag.count == 1 and dispatcher.stats.delivered == 8


async def test_a_channel_all_of_whose_streams_left_mid_fan_out_stops_there() -> None:
    dispatcher = ProgressDispatcher(connect_redis("redis://127.0.0.1:1/0"), chunk=2)
    task_id, other_id = uuid4(), uuid4()
    streams = [Stream(task_id, Transport()) for _ in range(5)]
    other = Stream(other_id, Transport())
    for stream in [*streams, other]:
        await dispatcher.watch(stream)
    dispatcher.offer(streams[0].channel, payload(task_id, 2))  # 2 now, 3 on later turns
    for stream in streams:
        dispatcher.unwatch(stream)
    dispatcher.offer(other.channel, payload(other_id, 2))  # queued behind it
    await dispatcher._fanout.drained()
    assert sum(len(stream.updates) for stream in streams) == 2
    assert [u.version for u in other.updates] == [2]


async def test_a_fan_out_whose_last_chunk_writes_nothing_still_records_its_lag() -> None:
    lag = LagHistogram()
    dispatcher = ProgressDispatcher(connect_redis("redis://127.0.0.1:1/0"), chunk=2, lag=lag)
    dispatcher.lag_sampler = LagSampler(interval_s=0)
    task_id = uuid4()
    streams = [Stream(task_id, Transport()) for _ in range(3)]
    for stream in streams:
        await dispatcher.watch(stream)
    channel = streams[0].channel
    last = list(dispatcher._watches[channel])[-1]  # the order the fan-out takes them in
    last._transport.buffered = 1  # type: ignore[union-attr]  # still sending: not written
    dispatcher.offer(channel, payload(task_id, 2))
    await dispatcher._fanout.drained()
    assert (dispatcher.stats.written, lag.count) == (2, 1)


@pytest.mark.parametrize(
    "template",
    [
        '{"id": "%s", "version": 2, "status": "running", "message": "\\ud800"}',  # lone surrogate
        '{"id": "%s", "version": 2, "status": "running", "result_data": {"x": NaN}}',
        '{"id": "%s", "version": 2, "status": "running", "n": 123456789012345678901234567890}',
    ],
    ids=["lone-surrogate", "nan", "huge-integer"],
)
async def test_what_json_accepts_is_accepted_though_orjson_refuses_some(
    dispatcher: ProgressDispatcher, template: str
) -> None:
    """Messages are decoded by orjson, which is stricter than json in places: those json
    takes are still delivered, unchanged, as they always were."""
    stream = Stream(uuid4(), Transport())
    await dispatcher.watch(stream)
    data = (template % stream.task_id).encode()
    dispatcher.offer(stream.channel, data)
    assert dispatcher.stats.undecodable == 0
    assert [u.version for u in stream.updates] == [2]
    assert data in stream.updates[0].frame
