"""The HTTP client's pure parts: the SSE wire format, error lines, defaults, and rendering."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest
from rich.console import Console

from praxiom_client import LineSplitter, RetryPolicy, SseEvent, SseParser
from praxiom_progress.cli.client import (
    DEFAULT_URL,
    CommandError,
    client_defaults,
    http_error_line,
    resolve_target,
)
from praxiom_progress.cli.main import build_parser
from praxiom_progress.cli.watch import (
    JsonRenderer,
    PlainRenderer,
    RichRenderer,
    exit_code_for,
    plain_line,
)


def parse(text: str, chunks: int = 1) -> tuple[list[SseEvent], SseParser]:
    """Feed `text` in `chunks` roughly equal byte slices, as a network would deliver it."""
    raw = text.encode("utf-8")
    size = max(1, -(-len(raw) // chunks))
    splitter, parser = LineSplitter(), SseParser()
    received: list[SseEvent] = []
    for start in range(0, len(raw), size):
        for line in splitter.feed(raw[start : start + size]):
            event = parser.feed(line)
            if event is not None:
                received.append(event)
    return received, parser


def payload(version: int, status: str = "running", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "b4c5d6e7-8901-2345-abcd-ef0123456789",
        "status": status,
        "task_type": "validation_kit",
        "progress_pct": 50,
        "phase": "research_plan",
        "message": "Building your research plan...",
        "error": None,
        "result_data": {},
        "version": version,
    }
    return {**base, **fields}


# -- the SSE parser ----------------------------------------------------------------------------


def test_events_ids_and_retry_as_the_gateway_sends_them() -> None:
    wire = (
        'retry: 1500\r\nid: 3\r\ndata: {"a": 1}\r\n\r\n'
        ": ping\r\n\r\n"
        'id: 4\r\ndata: {"a": 2}\r\n\r\n'
    )
    received, parser = parse(wire)
    assert [(e.id, e.data, e.event) for e in received] == [
        ("3", '{"a": 1}', "message"),
        ("4", '{"a": 2}', "message"),
    ]
    assert parser.retry_ms == 1500
    assert parser.last_event_id == "4"


@pytest.mark.parametrize("chunks", [1, 2, 7, 1000])
def test_any_chunking_and_any_line_ending_give_the_same_events(chunks: int) -> None:
    for ending in ("\n", "\r\n", "\r"):
        wire = ending.join(["id: 1", "data: first", "data: second", "", "id: 2", "data: é", "", ""])
        received, _ = parse(wire, chunks)
        assert [(e.id, e.data) for e in received] == [("1", "first\nsecond"), ("2", "é")]


def test_a_crlf_split_between_chunks_is_one_line_ending() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: x\r") == ["data: x"]
    assert splitter.feed(b"\n") == []
    assert splitter.feed(b"\r\n") == [""]


def test_comments_alone_dispatch_nothing_and_unknown_fields_are_ignored() -> None:
    received, parser = parse(": keep-alive\n\n: another\n\nfoo: bar\n\n")
    assert received == []
    assert parser.last_event_id is None


def test_field_value_rules() -> None:
    received, parser = parse("data:no space\ndata:  two spaces\ndata\n\nretry: soon\n\n")
    assert received[0].data == "no space\n two spaces\n"
    assert parser.retry_ms is None  # not digits: ignored


def test_the_last_event_id_persists_and_a_nul_id_is_ignored() -> None:
    received, parser = parse("id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\n")
    assert [e.id for e in received] == ["7", "7", "7"]
    assert parser.last_event_id == "7"


def test_an_unfinished_event_is_not_dispatched_and_a_bom_is_dropped() -> None:
    received, _ = parse("\ufeffdata: whole\n\ndata: half")
    assert [e.data for e in received] == ["whole"]


def test_named_events_are_reported_with_their_name() -> None:
    received, _ = parse("event: other\ndata: x\n\ndata: y\n\n")
    assert [(e.event, e.data) for e in received] == [("other", "x"), ("message", "y")]


# -- retries and exit codes ---------------------------------------------------------------------


def test_backoff_starts_at_half_a_second_doubles_and_is_capped() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert policy.delay(10_000) == 5.0


def test_exit_codes() -> None:
    assert exit_code_for("completed") == 0
    assert exit_code_for("failed") == 1
    assert exit_code_for("cancelled") == 3
    assert exit_code_for("running") is None and exit_code_for("pending") is None


# -- rendering ----------------------------------------------------------------------------------


def test_plain_line_shape() -> None:
    assert plain_line(payload(2)) == "running  50%  research_plan  Building your research plan..."
    assert plain_line(payload(3, "pending", progress_pct=0, phase="", message="")) == "pending  0%"


def test_plain_renderer_prints_one_line_per_change_and_nothing_for_a_heartbeat() -> None:
    out = io.StringIO()
    renderer = PlainRenderer(out)
    renderer.update(payload(1, "pending", progress_pct=0, phase="pending", message="Queued"))
    renderer.update(payload(2))
    renderer.update(payload(3))  # only the heartbeat moved: the same line
    renderer.reconnecting(1, 0.5, "Connection refused")
    renderer.update(payload(4, "completed", progress_pct=100, phase="complete", message="Done"))
    renderer.close()
    assert out.getvalue().splitlines() == [
        "pending  0%  pending  Queued",
        "running  50%  research_plan  Building your research plan...",
        "completed  100%  complete  Done",
    ]


def test_plain_renderer_keeps_a_hostile_message_on_one_line() -> None:
    out = io.StringIO()
    PlainRenderer(out).update(payload(1, message="line one\nline two\x1b[2J\r"))
    assert out.getvalue() == "running  50%  research_plan  line one line two [2J\n"


def test_json_renderer_prints_every_payload() -> None:
    out = io.StringIO()
    renderer = JsonRenderer(out)
    renderer.update(payload(2))
    renderer.update(payload(3))
    assert [json.loads(line)["version"] for line in out.getvalue().splitlines()] == [2, 3]


def test_rich_renderer_draws_the_bar_phase_percentage_and_message() -> None:
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, width=120, color_system=None)
    renderer = RichRenderer(console, "task b4c5d6e7")
    renderer.update(payload(2))
    renderer.reconnecting(1, 0.5, "Connection refused")
    renderer.update(payload(5, "completed", progress_pct=100, phase="complete", message="[b]ok"))
    renderer.close()
    renderer.close()  # a second close is harmless
    text = file.getvalue()
    assert "research_plan" in text and "50%" in text
    assert "Building your research plan..." in text
    assert "reconnecting" in text
    assert "complete" in text and "100%" in text
    assert "[b]ok" in text  # the server's text is never read as markup


def test_rich_renderer_that_saw_nothing_draws_nothing() -> None:
    file = io.StringIO()
    RichRenderer(Console(file=file, force_terminal=True), "task").close()
    assert "%" not in file.getvalue()


# -- errors and settings ------------------------------------------------------------------------


def test_error_line_from_the_gateway_body() -> None:
    body = json.dumps({"error": {"code": "NOT_FOUND", "message": "No such task"}})
    assert http_error_line(404, "Not Found", body) == "404 NOT_FOUND: No such task"


def test_error_line_names_the_invalid_fields() -> None:
    body = json.dumps(
        {
            "error": {"code": "VALIDATION_ERROR", "message": "The request body is not valid"},
            "fields": {"task_type": ["Unknown task type"], "params": {"x": ["Bad."]}},
        }
    )
    assert http_error_line(422, "Unprocessable Entity", body) == (
        "422 VALIDATION_ERROR: The request body is not valid "
        "(task_type: Unknown task type; params.x: Bad.)"
    )


@pytest.mark.parametrize("body", ["<html>\n<h1>Bad gateway</h1>\n</html>", "", "[1]", "{}"])
def test_error_line_falls_back_to_the_status_text(body: str) -> None:
    assert http_error_line(502, "Bad Gateway", body) == "502 Bad Gateway"


def test_defaults_come_from_the_given_environment() -> None:
    assert client_defaults({}).url == DEFAULT_URL
    assert client_defaults({}).token is None
    defaults = client_defaults({"PRAXIOM_URL": "http://gw:9000", "PRAXIOM_TOKEN": " pxp_x "})
    assert (defaults.url, defaults.token) == ("http://gw:9000", "pxp_x")


def args_for(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_options_beat_the_environment_and_a_trailing_slash_is_dropped() -> None:
    defaults = client_defaults({"PRAXIOM_URL": "http://env:1", "PRAXIOM_TOKEN": "env-token"})
    target = resolve_target(
        args_for("status", "--url", "http://cli:2/", "--token", "cli-token", str(_UUID)), defaults
    )
    assert (target.url, target.token) == ("http://cli:2", "cli-token")
    target = resolve_target(args_for("status", str(_UUID)), defaults)
    assert (target.url, target.token) == ("http://env:1", "env-token")


_UUID = "b4c5d6e7-8901-2345-abcd-ef0123456789"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["status", _UUID], {}),  # no token
        (["status", _UUID, "--token", " "], {}),
        (["status", _UUID, "--token", "a b"], {}),
        (["status", _UUID, "--url", "ftp://x"], {"PRAXIOM_TOKEN": "t"}),
        (["status", _UUID, "--url", "localhost:8080"], {"PRAXIOM_TOKEN": "t"}),
    ],
)
def test_bad_settings_are_usage_errors(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(CommandError) as caught:
        resolve_target(args_for(*argv), client_defaults(env))
    assert caught.value.exit_code == 2
