"""Named queries: the `.sql` file format and the shipped query files."""

from __future__ import annotations

import re

import pytest

from praxiom_progress.taskstate.sql import load_queries, parse_queries

TASKSTATE_QUERIES = {"get_task", "insert_task", "cancel_task", "task_types"}
ACCOUNT_QUERIES = {
    "create_token",
    "create_service_token",
    "revoke_token",
    "remove_member",
    "list_tokens",
    "workspace_exists",
    "revoke_token_by_id",
    "revoke_member_tokens",
}
RUNNER_QUERIES = {
    "claim_tasks",
    "report_progress",
    "end_tasks",
    "requeue_task",
    "retry_task",
    "heartbeat",
    "find_stale",
    "reap_task",
    "record_task_types",
}


def test_parse_splits_on_headers_and_skips_description_comments() -> None:
    text = """-- File comment before any header is ignored.
SELECT 'not a query';

-- first --
-- Describes the first query.
-- Still describing it.
SELECT 1;

-- second_query --
SELECT a,
       b
  FROM t -- trailing comment kept
-- a comment inside the body is kept
 WHERE x = %(x)s;
"""
    queries = parse_queries(text)
    assert list(queries) == ["first", "second_query"]
    assert queries["first"] == "SELECT 1;"
    assert queries["second_query"] == (
        "SELECT a,\n"
        "       b\n"
        "  FROM t -- trailing comment kept\n"
        "-- a comment inside the body is kept\n"
        " WHERE x = %(x)s;"
    )


def test_parse_strips_surrounding_blank_lines() -> None:
    queries = parse_queries("-- q --\n\n\nSELECT 2;\n\n\n")
    assert queries == {"q": "SELECT 2;"}


def test_header_with_surrounding_whitespace_is_still_a_header() -> None:
    queries = parse_queries("  -- q --  \nSELECT 3;")
    assert queries == {"q": "SELECT 3;"}


@pytest.mark.parametrize(
    "line",
    ["-- Not_A_Name --", "-- 1abc --", "--q--", "-- two words --", "-- q -- extra"],
)
def test_lines_that_are_not_headers_stay_in_the_body(line: str) -> None:
    queries = parse_queries(f"-- q --\nSELECT 1\n{line}\n;")
    assert list(queries) == ["q"]
    assert line.strip() in queries["q"]


def test_duplicate_names_raise() -> None:
    with pytest.raises(ValueError, match="'dup'"):
        parse_queries("-- dup --\nSELECT 1;\n-- other --\nSELECT 2;\n-- dup --\nSELECT 3;")


def test_empty_text_gives_no_queries() -> None:
    assert dict(parse_queries("")) == {}
    assert dict(parse_queries("-- only a comment\n")) == {}


def test_parsed_queries_are_read_only() -> None:
    queries = parse_queries("-- q --\nSELECT 1;")
    with pytest.raises(TypeError):
        queries["q"] = "DROP TABLE x;"  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("praxiom_progress.taskstate",), TASKSTATE_QUERIES),
        (("praxiom_progress.taskstate", "accounts.sql"), ACCOUNT_QUERIES),
        (("praxiom_progress.runner",), RUNNER_QUERIES),
        (("praxiom_progress.gateway", "token_use.sql"), {"note_token_use"}),
    ],
)
def test_shipped_query_files(args: tuple[str, ...], expected: set[str]) -> None:
    queries = load_queries(*args)
    assert set(queries) == expected
    for name, sql in queries.items():
        assert sql, name
        assert not sql.startswith("--"), f"{name}: description comment left in the query"
        # Only psycopg2 named parameters: no str.format/f-string residue outside SQL literals
        # (a literal such as '{}' for an empty jsonb is fine).
        code = re.sub(r"'(?:[^']|'')*'", "''", sql)
        without_params = re.sub(r"%\([a-z_]+\)s", "", code)
        assert "{" not in without_params and "}" not in without_params, name
        assert "%" not in without_params, f"{name}: stray % would break psycopg2 formatting"


def test_queries_use_named_parameters() -> None:
    assert "%(task_id)s" in load_queries("praxiom_progress.taskstate")["get_task"]
    runner = load_queries("praxiom_progress.runner")
    assert "%(claim_tokens)s" in runner["report_progress"]
    assert "%(claim_tokens)s" in runner["end_tasks"]
    assert (
        "%(token_hash)s"
        in load_queries("praxiom_progress.taskstate", "accounts.sql")["revoke_token"]
    )


def test_missing_query_file_raises() -> None:
    with pytest.raises(FileNotFoundError):
        load_queries("praxiom_progress.taskstate", "no_such_file.sql")
