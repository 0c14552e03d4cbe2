"""The spawn body schema refuses, as validation errors, what jsonb could not store."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from gateway.schemas import MAX_PARAMS_BYTES, SpawnRequestSchema

TYPES = ("validation_kit", "research")


def load(params: Any) -> dict[str, Any]:
    return SpawnRequestSchema(TYPES).load({"task_type": "research", "params": params})


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
    ],
    ids=["inf", "nan", "nul-value", "nul-key", "nul-nested", "surrogate", "too-big"],
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
        SpawnRequestSchema(TYPES).load({"task_type": "nope"})
    assert list(caught.value.messages) == ["task_type"]
