"""`watch --workspace`: its arguments, the table's model and how it is drawn, without services."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from praxiom_client import TaskPayload
from praxiom_progress.cli.main import main
from praxiom_progress.cli.workspace_watch import (
    JsonLinesRenderer,
    LineRenderer,
    WorkspaceTasks,
    make_workspace_renderer,
    workspace_table,
)

WORKSPACE = "0b5f7b76-39a4-4a8c-9a34-0d1c2a9e2a11"


def payload(n: int, status: str = "running", version: int = 1, **extra: Any) -> TaskPayload:
    base: dict[str, Any] = {
        "id": f"{n:08x}-0000-4000-8000-000000000000",
        "status": status,
        "task_type": "research",
        "progress_pct": 40,
        "phase": "running",
        "message": f"step {version}",
        "started_at": None,
        "completed_at": None,
        "heartbeat_at": None,
        "error": None,
        "result_data": {},
        "version": version,
    }
    return TaskPayload(**{**base, **extra})  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["watch"], "a task ID or --workspace"),
        (["watch", WORKSPACE, "--workspace", WORKSPACE], "not both"),
        (["watch", "--workspace", "acme"], "must be a task id"),
        (["watch", "--workspace", WORKSPACE, "--finished-for", "-1"], "0 to 86400"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--url", "http://127.0.0.1:9", "--token", "pxp_x"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and says in line, line


def test_the_table_keeps_the_newest_state_newest_task_first_and_drops_finished_ones() -> None:
    now = [100.0]
    tasks = WorkspaceTasks(finished_for_s=30, clock=lambda: now[0])
    assert tasks.update(payload(1), created_at="2026-01-01T00:00:01.000Z")
    assert tasks.update(payload(2), created_at="2026-01-01T00:00:03.000Z")
    assert tasks.update(payload(3), created_at="2026-01-01T00:00:02.000Z")
    assert [p["id"][:8] for p in tasks.rows()] == ["00000002", "00000003", "00000001"]

    assert not tasks.update(payload(1, version=1))  # not newer: nothing to show
    assert tasks.update(payload(1, version=3, message="later"))
    assert not tasks.update(payload(1, version=2))  # versions never go back
    assert tasks.rows()[-1]["message"] == "later"

    assert tasks.update(payload(4))  # from the stream: first seen now, the newest there is
    assert tasks.rows()[0]["id"].startswith("00000004")

    assert tasks.update(payload(2, status="completed", version=2))
    now[0] += 29.9
    assert len(tasks.rows()) == 4
    now[0] += 0.1
    assert [p["id"][:8] for p in tasks.rows()] == ["00000004", "00000003", "00000001"]


def test_plain_lines_say_which_task_changed_and_skip_repeats() -> None:
    out = io.StringIO()
    renderer = LineRenderer(out)
    tasks = WorkspaceTasks(60)
    for state in (payload(7), payload(7, version=2, message="step 1"), payload(8, "pending")):
        tasks.update(state)
        renderer.show(tasks, state)
    renderer.show(tasks, None)
    assert out.getvalue().splitlines() == [
        "00000007  research  running  40%  running  step 1",
        "00000008  research  pending  40%  running  step 1",
    ]


def test_json_lines_are_each_payload() -> None:
    out = io.StringIO()
    JsonLinesRenderer(out).show(WorkspaceTasks(60), payload(9))
    assert '"id": "00000009-0000-4000-8000-000000000000"' in out.getvalue()


def test_the_table_draws_every_task_with_its_bar() -> None:
    console = Console(file=io.StringIO(), width=140, color_system=None, force_terminal=False)
    rows = [
        payload(1, "failed", error="Simulated failure at reading", progress_pct=40),
        payload(2, "completed", progress_pct=100, phase="complete", message="Done."),
        payload(3, "pending", progress_pct=0, phase="pending", message="Queued\n(line two)"),
    ]
    console.print(workspace_table(WORKSPACE, rows))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"workspace {WORKSPACE}" in text and "3 tasks · Ctrl-C to stop" in text
    lines = text.splitlines()
    failed = next(line for line in lines if "00000001" in line)
    assert "failed" in failed and "40%" in failed and "Simulated failure at reading" in failed
    assert "100%" in next(line for line in lines if "00000002" in line)
    pending = next(line for line in lines if "00000003" in line)
    assert "Queued (line two)" in pending  # one line per task, whatever the message holds


def test_a_pipe_gets_plain_lines_and_json_when_asked() -> None:
    assert isinstance(
        make_workspace_renderer(io.StringIO(), WORKSPACE, as_json=False), LineRenderer
    )
    renderer = make_workspace_renderer(io.StringIO(), WORKSPACE, as_json=True)
    assert isinstance(renderer, JsonLinesRenderer)


def test_the_table_says_when_it_reconnects_until_the_next_state() -> None:
    console = Console(file=io.StringIO(), width=140, color_system=None, force_terminal=False)
    console.print(
        workspace_table(WORKSPACE, [payload(1)], "reconnecting: timed out; retrying in 1.0s")
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "reconnecting: timed out; retrying in 1.0s" in text and "Ctrl-C" not in text
