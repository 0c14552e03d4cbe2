"""The list's cursor and query string, without services."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from praxiom_progress.gateway.errors import ApiError
from praxiom_progress.gateway.listing import DEFAULT_LIMIT, Position, parse_query


def test_a_cursor_names_its_position_exactly_and_always_the_same() -> None:
    position = Position(datetime(2026, 4, 21, 14, 22, 10, 123456, tzinfo=UTC), uuid4())
    cursor = position.cursor()
    assert Position.from_cursor(cursor) == position
    assert Position(position.created_at, position.task_id).cursor() == cursor
    assert cursor.isascii() and cursor.isprintable() and "&" not in cursor
    # the latest a cursor can say, in the year 5138
    assert Position.from_cursor("9" * 17 + "." + "f" * 32).created_at.year == 5138


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "1." + "0" * 31,
        "1." + "0" * 32 + "\n",
        "-1." + "0" * 32,
        "1" * 18 + "." + "0" * 32,  # past the year 5000
        "1.0000000000000000000000000000000G",
        "1." + "0" * 32 + ".1",
    ],
)
def test_anything_else_is_not_a_cursor(cursor: str) -> None:
    with pytest.raises(ValueError):
        Position.from_cursor(cursor)


def test_the_query_string_loads_with_defaults() -> None:
    assert parse_query({}, []) == {"limit": DEFAULT_LIMIT}
    workspace = uuid4()
    loaded = parse_query(
        {"workspace_id": str(workspace), "status": "running,pending,running", "limit": "200"},
        ["workspace_id", "status", "limit"],
    )
    assert loaded == {"workspace_id": workspace, "status": ["pending", "running"], "limit": 200}


def test_every_bad_parameter_is_named_at_once() -> None:
    with pytest.raises(ApiError) as refused:
        parse_query(
            {"limit": "0", "status": "done", "workspace_id": "x", "page": "2"},
            ["limit", "status", "workspace_id", "page"],
        )
    assert refused.value.status == 422
    assert set(refused.value.extra["fields"]) == {"limit", "status", "workspace_id", "page"}
    with pytest.raises(ApiError) as twice:
        parse_query({"limit": "5"}, ["limit", "limit"])
    assert twice.value.extra["fields"] == {"limit": ["Give this parameter once."]}


def test_a_cursor_round_trips_through_the_query_string() -> None:
    position = Position(datetime(2026, 1, 1, tzinfo=UTC), UUID(int=5))
    assert parse_query({"cursor": position.cursor()}, ["cursor"])["cursor"] == position
