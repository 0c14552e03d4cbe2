"""CLI argument errors: one `error:` line on stderr, exit 2, and no database touched."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from importlib.metadata import version

import pytest

import praxiom_progress.cli.main
from praxiom_progress.cli.main import EXIT_USAGE, build_parser, main


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to connect fails the test: these errors come before any connection."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CLI tried to connect to PostgreSQL")

    def refuse_run(coro: Coroutine[object, object, object], *args: object, **kw: object) -> None:
        coro.close()
        raise AssertionError("the CLI got past argument parsing")

    monkeypatch.setattr(praxiom_progress.cli.main.Database, "connect", refuse)
    monkeypatch.setattr(praxiom_progress.cli.main.asyncio, "run", refuse_run)
    # Settings must not be the reason for an exit 2.
    for name in ("LOG_LEVEL", "DATABASE_URL", "GATEWAY_PORT", "TASK_TIMEOUTS"):
        monkeypatch.delenv(name, raising=False)


def run_failing(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == EXIT_USAGE == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert captured.err.endswith("\n")
    return lines[0]


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, [])
    assert "command" in line


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["frobnicate"])
    assert "frobnicate" in line


def test_unknown_token_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["token", "frobnicate"])
    assert "frobnicate" in line


def test_token_without_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    run_failing(capsys, ["token"])


def test_unknown_member_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["member", "add", "--workspace", "w", "--user", "u"])
    assert "add" in line


def test_token_create_without_user(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["token", "create", "--workspace", "acme"])
    assert "--user" in line


def test_token_create_without_workspace(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["token", "create", "--user", "ada"])
    assert "--workspace" in line


def test_member_remove_without_user(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["member", "remove", "--workspace", "acme"])
    assert "--user" in line


def test_token_revoke_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["token", "revoke"])
    assert "token" in line


@pytest.mark.parametrize("expires_in", ["-1", "abc", "0", "nan", "1e12", ""])
def test_bad_expires_in(capsys: pytest.CaptureFixture[str], expires_in: str) -> None:
    line = run_failing(
        capsys,
        ["token", "create", "--workspace", "acme", "--user", "ada", "--expires-in", expires_in],
    )
    assert "--expires-in" in line


@pytest.mark.parametrize(
    "workspace", ["", "   ", "acme\x00", "ac\nme", "tab\there", "bell\x07", "del\x7f", "w" * 201]
)
def test_bad_workspace_name(capsys: pytest.CaptureFixture[str], workspace: str) -> None:
    line = run_failing(capsys, ["token", "create", "--workspace", workspace, "--user", "ada"])
    assert "--workspace" in line


@pytest.mark.parametrize("user", ["", "a\rda", "\x1b[31mred"])
def test_bad_user_name(capsys: pytest.CaptureFixture[str], user: str) -> None:
    line = run_failing(capsys, ["member", "remove", "--workspace", "acme", "--user", user])
    assert "--user" in line


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_failing(capsys, ["migrate", "--force"])
    assert "--force" in line


def test_bad_setting_exits_2_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    line = run_failing(capsys, ["migrate"])
    assert "LOG_LEVEL" in line


@pytest.mark.parametrize(
    "argv", [["--help"], ["-h"], ["token", "--help"], ["token", "create", "--help"]]
)
def test_help_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    captured = capsys.readouterr()
    assert "usage:" in captured.out
    assert captured.err == ""


def test_parser_accepts_valid_arguments() -> None:
    args = build_parser().parse_args(
        ["token", "create", "--workspace", "  Acme Corp ", "--user", "ada", "--expires-in", "90"]
    )
    assert args.command == "token"
    assert args.token_command == "create"
    assert args.workspace == ["Acme Corp"]
    assert args.user == "ada"
    assert args.expires_in == 90.0
    assert args.json is False


def test_parser_names_with_unicode_are_fine() -> None:
    args = build_parser().parse_args(["member", "remove", "--workspace", "Café—Ω", "--user", "zoë"])
    assert (args.workspace, args.user) == ("Café—Ω", "zoë")


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"praxiom-progress {version('praxiom-progress')}"
