"""One read of the catalogue checks a spawn, for the gateway and `praxiom_progress.spawn`
alike: the type, the fields, then the params against the type's JSON Schema."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from praxiom_progress.taskstate.spawning import INVALID_SPAWN, CatalogueView, SpawnRejected


def _row(name: str, params_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.title(),
        "description": "",
        "timeout_s": 60.0,
        "params_schema": params_schema or {"type": "object"},
        "max_attempts": 1,
        "served": True,
    }


ROWS = [
    _row("export_csv", {"type": "object", "properties": {"rows": {"type": "integer",
         "minimum": 1}}, "required": ["rows"], "additionalProperties": False}),
    _row("research"),
]  # fmt: skip
VIEW = CatalogueView.from_rows(ROWS, read_at=0.0)


def test_a_valid_spawn_is_loaded() -> None:
    workspace_id = uuid4()
    spec = VIEW.check_spawn(
        {"task_type": "export_csv", "workspace_id": str(workspace_id), "params": {"rows": 3}}
    )
    assert spec == {"task_type": "export_csv", "workspace_id": workspace_id, "params": {"rows": 3}}
    assert VIEW.check_spawn({"task_type": "research"}) == {
        "task_type": "research",
        "workspace_id": None,
        "params": {},
    }


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(SpawnRejected) as refused:
        VIEW.check_spawn({"task_type": "nope"})
    assert refused.value.message == INVALID_SPAWN
    assert refused.value.fields == {
        "task_type": ["Unknown task type; one of: export_csv, research"]
    }
    assert isinstance(refused.value, ValueError)
    assert "export_csv, research" in str(refused.value)


def test_params_get_every_field_error_and_their_own_message() -> None:
    with pytest.raises(SpawnRejected) as refused:
        VIEW.check_spawn({"task_type": "export_csv", "params": {"rows": 0, "extra": 1}})
    assert refused.value.message == "The params are not valid for task type export_csv"
    assert refused.value.fields == {
        "params.extra": ["Unknown field."],
        "params.rows": ["0 is less than the minimum of 1"],
    }


def test_the_caller_names_the_message_of_refused_fields() -> None:
    with pytest.raises(SpawnRejected) as refused:
        VIEW.check_spawn({"task_type": "research", "shoe_size": 9}, "The arguments are not valid")
    assert refused.value.message == "The arguments are not valid"
    assert refused.value.fields == {"shoe_size": ["Unknown field."]}


def test_an_allow_list_narrows_the_catalogue() -> None:
    view = CatalogueView.from_rows(ROWS, read_at=0.0, allowed=frozenset({"research"}))
    assert list(view.types) == ["research"]
    with pytest.raises(SpawnRejected):
        view.check_spawn({"task_type": "export_csv", "params": {"rows": 1}})


def test_an_empty_catalogue_says_no_runner_has_started() -> None:
    with pytest.raises(SpawnRejected) as refused:
        CatalogueView.from_rows([], read_at=0.0).check_spawn({"task_type": "research"})
    assert refused.value.fields == {
        "task_type": ["Unknown task type; none is catalogued yet (no runner has started)"]
    }
