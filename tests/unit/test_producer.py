"""The producer's edges that need no database: rows from any cursor factory, task ids, and
what is refused before a statement is sent."""

from __future__ import annotations

from collections import namedtuple
from typing import Any
from uuid import uuid4

import pytest

from praxiom_progress import SpawnRejected
from praxiom_progress.producer import _dicts, _spawn_spec, _task_id

DESCRIPTION = [("id", 2950), ("status", 25)]  # DB-API: the name comes first


def test_rows_become_dicts_whatever_the_cursor_factory() -> None:
    Row = namedtuple("Row", ["id", "status"])
    rows: list[Any] = [("a", "pending"), {"id": "b", "status": "running"}, Row("c", "failed")]
    assert _dicts(rows, DESCRIPTION) == [
        {"id": "a", "status": "pending"},
        {"id": "b", "status": "running"},
        {"id": "c", "status": "failed"},
    ]
    assert _dicts([], None) == []


def test_a_task_id_is_a_uuid_or_its_text() -> None:
    task_id = uuid4()
    assert _task_id(task_id) is task_id
    assert _task_id(str(task_id)) == task_id
    with pytest.raises(ValueError, match="not a task id: 'x'"):
        _task_id("x")
    with pytest.raises(TypeError, match="not int"):
        _task_id(7)


ROWS = [
    {
        "name": "research",
        "label": "Research",
        "description": "",
        "timeout_s": 60.0,
        "params_schema": {"type": "object"},
        "max_attempts": 1,
        "served": False,
    }
]


def test_the_insert_carries_ids_as_text() -> None:
    workspace_id = uuid4()
    sql, args = _spawn_spec(ROWS, "research", workspace_id, {"a": 1}, "order:7")
    assert "INSERT INTO background_tasks" in sql
    assert args["workspace_id"] == str(workspace_id)
    assert args["spawned_by"] == "order:7"
    assert args["params"].adapted == {"a": 1}


def test_spawned_by_must_be_text() -> None:
    with pytest.raises(TypeError, match="spawned_by must be a str or None, not int"):
        _spawn_spec(ROWS, "research", uuid4(), None, 7)


def test_a_missing_workspace_id_is_a_field_error() -> None:
    with pytest.raises(SpawnRejected) as refused:
        _spawn_spec(ROWS, "research", None, None, None)
    assert refused.value.fields == {"workspace_id": ["Missing data for required field."]}
