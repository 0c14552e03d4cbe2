"""A stream's watch: written straight to its socket when the socket can take it, else a
mailbox that keeps only the newest state, never goes back, and never loses the end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from gateway.dispatcher import Update, Watch

NOW = 100.0


def update(version: int, terminal: bool = False) -> Update:
    return Update.of(version, b'{"version":%d}' % version, terminal)


class Peer:
    """A real loopback TCP connection: our end's transport, and the peer's raw socket."""

    def __init__(self, transport: asyncio.Transport, peer: socket.socket) -> None:
        self.transport = transport
        self.peer = peer

    def received(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    accepted, _ = listener.accept()
    accepted.setblocking(False)
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield Peer(transport, accepted)  # type: ignore[arg-type]
    transport.close()
    accepted.close()
    listener.close()


def test_a_slow_stream_gets_only_the_newest_state_and_the_skips_are_counted() -> None:
    watch = Watch(uuid4())  # no transport: every update goes through the mailbox
    assert watch.offer(update(1), NOW) == 0  # queued, nothing skipped
    assert watch.offer(update(2), NOW) == -1  # replaced 1, never sent
    assert watch.offer(update(3), NOW) == -1
    assert watch.take() == update(3)
    assert watch.take() is None
    assert watch.last_activity == NOW


def test_an_older_or_equal_version_never_replaces_a_newer_one() -> None:
    watch = Watch(uuid4())
    watch.offer(update(5), NOW)
    assert watch.offer(update(4), NOW) == 0
    assert watch.offer(update(5), NOW) == 0
    assert watch.take() == update(5)


def test_a_state_already_sent_is_not_taken_again_unless_it_is_an_idle_re_emit() -> None:
    watch = Watch(uuid4())
    watch.offer(update(5), NOW)
    watch.sent_version = 5  # the stream sent its snapshot, at the same version, meanwhile
    assert watch.take() is None
    assert watch.offer(update(5), NOW) == 0  # a late publish of what it has
    assert watch.take() is None
    watch.offer(update(5), NOW, again=True)  # the idle re-emit: same version, due anyway
    assert watch.take() == update(5)


def test_the_terminal_state_survives_any_burst_before_it() -> None:
    watch = Watch(uuid4())
    for version in range(1, 100):
        watch.offer(update(version), NOW)
    watch.offer(update(100, terminal=True), NOW)
    watch.offer(update(99), NOW)  # a late, reordered publish
    taken = watch.take()
    assert taken is not None and taken.terminal and taken.version == 100


async def test_the_frame_is_one_sse_event_and_splits_stray_line_breaks() -> None:
    assert update(7).frame == b'id: 7\r\ndata: {"version":7}\r\n\r\n'
    assert update(7).chunk == b"%x\r\n%s\r\n" % (len(update(7).frame), update(7).frame)
    framed = Update.of(3, b"a\nb", False, retry_ms=1500).frame
    assert framed == b"id: 3\r\ndata: a\r\ndata: b\r\nretry: 1500\r\n\r\n"


async def test_wait_wakes_on_an_offer_and_times_out_quietly() -> None:
    watch = Watch(uuid4())
    assert await watch.wait(0.01) is False
    watch.offer(update(1), NOW)
    assert await watch.wait(1.0) is True
    watch.poke()
    assert await watch.wait(1.0) is True and watch.take() == update(1)


async def test_an_update_the_socket_can_take_is_written_at_once_without_waking(
    peer: Peer,
) -> None:
    watch = Watch(uuid4())
    watch.transport = peer.transport
    assert watch.offer(update(1), NOW) == 1 and watch.offer(update(2), NOW) == 1
    assert watch.sent_version == 2 and watch.latest is None
    assert await watch.wait(0.01) is False  # nobody was woken
    await asyncio.sleep(0.05)
    assert peer.received() == update(1).chunk + update(2).chunk
    watch.offer(update(2), NOW, again=True)  # the idle re-emit goes the same way
    await asyncio.sleep(0.05)
    assert peer.received() == update(2).chunk


async def test_the_terminal_state_wakes_the_stream_instead(peer: Peer) -> None:
    watch = Watch(uuid4())
    watch.transport = peer.transport
    assert watch.offer(update(3, terminal=True), NOW) == 0
    assert await watch.wait(1.0) is True and watch.take() == update(3, terminal=True)
    await asyncio.sleep(0.05)
    assert peer.received() == b""  # the stream's task writes it, then ends the response


async def test_a_socket_that_is_still_sending_gets_the_mailbox_and_coalescing(
    peer: Peer,
) -> None:
    watch = Watch(uuid4())
    watch.transport = peer.transport
    big = Update.of(1, b"x" * (4 << 20), False)  # more than the socket buffers hold
    assert watch.offer(big, NOW) == 1
    assert peer.transport.get_write_buffer_size() > 0  # the peer is not reading
    assert watch.offer(update(2), NOW) == 0  # queued, the task is woken
    assert watch.offer(update(3), NOW) == -1  # 2 is skipped: 3 is a full state
    assert await watch.wait(1.0) is True and watch.take() == update(3)
