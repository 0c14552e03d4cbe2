"""An update's bytes, encoded once for every stream: the SSE event, and the same event as one
HTTP/1.1 chunk for writing straight to a socket."""

from __future__ import annotations

from uuid import uuid4

from praxiom_progress.gateway.frames import Update, snapshot
from praxiom_progress.taskstate.models import Task


def update(version: int, terminal: bool = False) -> Update:
    return Update.of(version, b'{"version":%d}' % version, terminal)


def test_the_frame_is_one_sse_event_and_splits_stray_line_breaks() -> None:
    assert update(7).frame == b'id: 7\r\ndata: {"version":7}\r\n\r\n'
    framed = Update.of(3, b"a\nb", False, retry_ms=1500).frame
    assert framed == b"id: 3\r\ndata: a\r\ndata: b\r\nretry: 1500\r\n\r\n"
    assert (
        Update.of(4, b"a\r\nb\rc", False).frame == b"id: 4\r\ndata: a\r\ndata: b\r\ndata: c\r\n\r\n"
    )
    assert Update.of(5, b"a\rb", False).lines == b"data: a\r\ndata: b\r\n"  # a lone CR too


def test_the_chunk_is_the_frame_in_http_1_1_chunked_framing() -> None:
    frame = update(7).frame
    assert update(7).chunk == b"%x\r\n%s\r\n" % (len(frame), frame)
    big = Update.of(1, b"x" * 300, False)
    size, _, rest = big.chunk.partition(b"\r\n")
    assert int(size, 16) == len(big.frame) and rest == big.frame + b"\r\n"


def test_a_snapshot_is_the_rows_payload_with_its_version_and_whether_it_ends_the_task() -> None:
    row = {"id": uuid4(), "status": "completed", "task_type": "validation_kit",
           "progress_pct": 100, "phase": "complete", "message": "Done", "started_at": None,
           "completed_at": None, "heartbeat_at": None, "error": None, "result_data": {},
           "version": 9}  # fmt: skip
    first = snapshot(Task.from_row(row), retry_ms=2000)
    assert first.version == 9 and first.terminal
    assert first.frame.startswith(b"id: 9\r\ndata: {") and first.frame.endswith(
        b"retry: 2000\r\n\r\n"
    )
    assert not snapshot(Task.from_row({**row, "status": "running"})).terminal
