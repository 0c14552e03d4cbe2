"""A stream's mailbox keeps only the newest state, never goes back, and never loses the end."""

from __future__ import annotations

from uuid import uuid4

from gateway.dispatcher import Update, Watch


def update(version: int, terminal: bool = False) -> Update:
    return Update.of(version, b'{"version":%d}' % version, terminal)


def test_a_slow_stream_gets_only_the_newest_state_and_the_skips_are_counted() -> None:
    watch = Watch(uuid4())
    assert watch.offer(update(1)) is False  # nothing was waiting
    assert watch.offer(update(2)) is True  # replaced 1, never sent
    assert watch.offer(update(3)) is True
    assert watch.take() == update(3)
    assert watch.take() is None


def test_an_older_or_equal_version_never_replaces_a_newer_one() -> None:
    watch = Watch(uuid4())
    watch.offer(update(5))
    assert watch.offer(update(4)) is False
    assert watch.offer(update(5)) is False
    assert watch.take() == update(5)


def test_the_terminal_state_survives_any_burst_before_it() -> None:
    watch = Watch(uuid4())
    for version in range(1, 100):
        watch.offer(update(version))
    watch.offer(update(100, terminal=True))
    watch.offer(update(99))  # a late, reordered publish
    taken = watch.take()
    assert taken is not None and taken.terminal and taken.version == 100


async def test_the_frame_is_one_sse_event_and_splits_stray_line_breaks() -> None:
    assert update(7).frame == b'id: 7\r\ndata: {"version":7}\r\n\r\n'
    framed = Update.of(3, b"a\nb", False, retry_ms=1500).frame
    assert framed == b"id: 3\r\ndata: a\r\ndata: b\r\nretry: 1500\r\n\r\n"


async def test_wait_wakes_on_an_offer_and_times_out_quietly() -> None:
    watch = Watch(uuid4())
    assert await watch.wait(0.01) is False
    watch.offer(update(1))
    assert await watch.wait(1.0) is True
    watch.poke()
    assert await watch.wait(1.0) is True and watch.take() == update(1)
