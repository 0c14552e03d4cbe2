"""The runner's pure helpers: the `error` text, a handler's return value, the lost-runner error."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from praxiom_progress.runner.execution import Failure, _as_result, describe_failure
from praxiom_progress.runner.handlers import TaskFailed, TaskResult
from praxiom_progress.runner.worker import runner_lost_error


class CustomError(Exception):
    pass


def test_task_failed_text_is_kept_verbatim() -> None:
    text = "Upstream API refused the request (HTTP 429) — try again later"
    assert describe_failure(TaskFailed(text)) == text


def test_task_failed_without_text() -> None:
    assert describe_failure(TaskFailed()) == "Task failed"
    assert describe_failure(TaskFailed("   ")) == "Task failed"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad value"), "ValueError: bad value"),
        (KeyError("document"), "KeyError: 'document'"),
        (CustomError("it broke"), "CustomError: it broke"),
        (RuntimeError("  padded  "), "RuntimeError: padded"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_other_exceptions_name_their_type(exc: BaseException, expected: str) -> None:
    assert describe_failure(exc) == expected


@pytest.mark.parametrize("exc", [RuntimeError(), RuntimeError(""), RuntimeError(" \n ")])
def test_empty_message_gives_the_type_name(exc: BaseException) -> None:
    assert describe_failure(exc) == "RuntimeError"


def test_multi_line_keeps_the_first_line_only() -> None:
    assert describe_failure(ValueError("first line\nsecond line\nthird")) == (
        "ValueError: first line"
    )
    assert describe_failure(TaskFailed("\nsummary\ndetails")) == "summary"


def test_long_text_is_truncated_to_500_characters() -> None:
    assert describe_failure(TaskFailed("x" * 600)) == "x" * 500
    described = describe_failure(ValueError("y" * 600))
    assert len(described) == 500
    assert described.startswith("ValueError: yyy")


def test_text_of_exactly_500_characters_is_kept() -> None:
    assert describe_failure(TaskFailed("z" * 500)) == "z" * 500


# -- _as_result -----------------------------------------------------------------------------


def test_dict_becomes_a_result() -> None:
    result = _as_result({"document_ids": ["a"], "summary": "s"})
    assert result == TaskResult({"document_ids": ["a"], "summary": "s"})
    assert isinstance(result, TaskResult)
    assert result.message is None


def test_none_becomes_an_empty_result() -> None:
    result = _as_result(None)
    assert isinstance(result, TaskResult)
    assert dict(result.result_data) == {}
    assert result.message is None


def test_empty_dict_becomes_an_empty_result() -> None:
    result = _as_result({})
    assert isinstance(result, TaskResult) and dict(result.result_data) == {}


def test_task_result_passes_through() -> None:
    returned = TaskResult({"k": [1, 2]}, message="All done")
    assert _as_result(returned) is returned


def test_read_only_mapping_is_accepted() -> None:
    result = _as_result(MappingProxyType({"k": 1}))
    assert isinstance(result, TaskResult)
    assert dict(result.result_data) == {"k": 1}


@pytest.mark.parametrize(
    "returned",
    [
        {"when": object()},
        {"items": {1, 2}},
        {"raw": b"bytes"},
        TaskResult({"nested": {"deeper": [object()]}}),
    ],
)
def test_non_json_result_data_is_a_failure(returned: Any) -> None:
    outcome = _as_result(returned)
    assert isinstance(outcome, Failure)
    assert outcome.error.startswith("Handler returned a result_data that is not JSON")
    assert outcome.timed_out is False
    assert len(outcome.error) <= 500


@pytest.mark.parametrize(
    ("returned", "type_name"),
    [
        ("a string", "str"),
        ([1, 2], "list"),
        (42, "int"),
        (TaskResult(["not", "a", "mapping"]), "list"),  # type: ignore[arg-type]
        (TaskResult("text"), "str"),  # type: ignore[arg-type]
    ],
)
def test_non_mapping_is_a_failure(returned: Any, type_name: str) -> None:
    outcome = _as_result(returned)
    assert outcome == Failure(f"Handler returned {type_name}, not a result_data object")


@pytest.mark.parametrize("message", [42, b"done", ["done"]])
def test_non_string_message_is_a_failure(message: Any) -> None:
    outcome = _as_result(TaskResult({}, message=message))
    assert outcome == Failure("Handler returned a message that is not a string")


def test_runner_lost_error_mentions_the_threshold() -> None:
    assert runner_lost_error(30) == "Task runner lost: no heartbeat for over 30s"
    assert runner_lost_error(30.0) == "Task runner lost: no heartbeat for over 30s"
    assert "2.5s" in runner_lost_error(2.5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_in_result_data_are_a_failure(value: float) -> None:
    assert isinstance(_as_result({"score": value}), Failure)


@pytest.mark.parametrize("returned", [[], 0, "", False])
def test_empty_non_mappings_are_a_failure_too(returned: Any) -> None:
    assert isinstance(_as_result(returned), Failure)
