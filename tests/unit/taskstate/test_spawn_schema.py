"""The spawn body schema refuses, as validation errors, what jsonb could not store."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from praxiom_progress.taskstate.spawning import MAX_PARAMS_BYTES, spawn_request_schema

TYPES = ("validation_kit", "research")


SCHEMA = spawn_request_schema(TYPES)


def load(params: Any) -> dict[str, Any]:
    return SCHEMA.load({"task_type": "research", "params": params})


@pytest.mark.parametrize(
    "params",
    [
        {"x": float("inf")},
        {"x": float("nan")},
        {"x": "a\x00b"},
        {"a\x00": 1},
        {"x": ["\x00"]},
        {"x": "\ud800"},
        {"x": "a" * MAX_PARAMS_BYTES},
        {"x": object()},  # from Python (praxiom_progress.spawn): not JSON at all
    ],
    ids=["inf", "nan", "nul-value", "nul-key", "nul-nested", "surrogate", "too-big", "object"],
)
def test_unstorable_params_are_validation_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        load(params)
    assert "params" in caught.value.messages


@pytest.mark.parametrize(
    "params",
    [{"x": "\\u0000"}, {"x": "\\\\\\u0000"}, {"x": "—"}, {}, {"nested": {"a": [1, 2.5, None]}}],
    ids=["escaped-backslash-u0000", "three-backslashes", "non-ascii", "empty", "nested"],
)
def test_storable_params_pass(params: dict[str, Any]) -> None:
    assert load(params)["params"] == params


def test_unknown_task_type_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        SCHEMA.load({"task_type": "nope"})
    assert list(caught.value.messages) == ["task_type"]


def test_building_schemas_for_other_types_leaves_each_one_its_own_types() -> None:
    """A schema per call used to append its OneOf to a list every instance shared: each bad
    spawn repeated "Unknown task type" once more, and validation slowed down for good."""
    for _ in range(50):
        spawn_request_schema(("other",))
    messages = []
    for _ in range(1000):
        with pytest.raises(ValidationError) as caught:
            SCHEMA.load({"task_type": "nope"})
        messages.append(caught.value.messages)
    assert (
        messages[0]
        == messages[-1]
        == {"task_type": ["Unknown task type; one of: validation_kit, research"]}
    )
    assert SCHEMA.load({"task_type": "research"})["task_type"] == "research"
    with pytest.raises(ValidationError):
        SCHEMA.load({"task_type": "other"})
