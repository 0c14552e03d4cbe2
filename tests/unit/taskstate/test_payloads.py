"""The payload: one shape, made from a row, validated by its schema, encoded compactly."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.payloads import (
    PAYLOAD_FIELDS,
    TaskPayloadSchema,
    ValidationError,
    encode_payload,
    payload_bytes,
    task_payload,
)

EXPECTED_KEYS = [
    "id",
    "status",
    "task_type",
    "progress_pct",
    "phase",
    "message",
    "started_at",
    "completed_at",
    "heartbeat_at",
    "error",
    "result_data",
    "version",
]
TASK_ID = UUID("b4c5d6e7-8901-2345-abcd-ef0123456789")
PLUS_ONE = timezone(timedelta(hours=1))
ISO_UTC_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def payload_of(row: dict[str, Any]) -> dict[str, Any]:
    """The payload of a row, as every store builds it: through Task."""
    return task_payload(Task.from_row(row))


def make_row(**changes: Any) -> dict[str, Any]:
    """A `background_tasks` row as the database returns it, extra columns included."""
    row: dict[str, Any] = {
        "workspace_id": uuid4(),
        "params": {"step_seconds": 0, "secret": "do-not-leak"},
        "runner_id": "host:1:abc",
        "claim_token": uuid4(),
        "timeout_s": 240.0,
        "created_at": datetime(2026, 4, 21, 14, 22, 0, tzinfo=UTC),
        "id": TASK_ID,
        "status": "running",
        "task_type": "validation_kit",
        "progress_pct": 50,
        "phase": "research_plan",
        "message": "Building your research plan...",
        "started_at": datetime(2026, 4, 21, 14, 22, 10, tzinfo=UTC),
        "completed_at": None,
        "heartbeat_at": datetime(2026, 4, 21, 14, 23, 41, 120000, tzinfo=UTC),
        "error": None,
        "result_data": {"phase": "research_plan", "progress_pct": 50},
        "version": 3,
    }
    row.update(changes)
    return row


def test_payload_fields_are_the_spec_fields_in_order() -> None:
    assert list(PAYLOAD_FIELDS) == EXPECTED_KEYS


def test_payload_has_exactly_the_spec_keys_in_order() -> None:
    payload = payload_of(make_row())
    assert list(payload) == EXPECTED_KEYS
    for extra in ("params", "workspace_id", "runner_id", "claim_token", "timeout_s", "created_at"):
        assert extra not in payload
    assert "do-not-leak" not in encode_payload(payload)


def test_payload_matches_the_spec_example() -> None:
    payload = payload_of(make_row())
    assert payload == {
        "id": "b4c5d6e7-8901-2345-abcd-ef0123456789",
        "status": "running",
        "task_type": "validation_kit",
        "progress_pct": 50,
        "phase": "research_plan",
        "message": "Building your research plan...",
        "started_at": "2026-04-21T14:22:10.000Z",
        "completed_at": None,
        "heartbeat_at": "2026-04-21T14:23:41.120Z",
        "error": None,
        "result_data": {"phase": "research_plan", "progress_pct": 50},
        "version": 3,
    }


def test_id_is_a_string_uuid() -> None:
    payload = payload_of(make_row())
    assert isinstance(payload["id"], str)
    assert UUID(payload["id"]) == TASK_ID


def test_aware_timestamp_in_another_zone_is_converted_to_utc() -> None:
    started = datetime(2026, 4, 21, 15, 22, 10, 987654, tzinfo=PLUS_ONE)
    payload = payload_of(make_row(started_at=started))
    assert payload["started_at"] == "2026-04-21T14:22:10.987Z"


def test_timestamp_crossing_midnight_converts_the_date_too() -> None:
    started = datetime(2026, 1, 1, 0, 30, tzinfo=PLUS_ONE)
    payload = payload_of(make_row(started_at=started))
    assert payload["started_at"] == "2025-12-31T23:30:00.000Z"


def test_naive_timestamp_is_treated_as_utc() -> None:
    payload = payload_of(make_row(completed_at=datetime(2026, 4, 21, 14, 25, 52, 410000)))
    assert payload["completed_at"] == "2026-04-21T14:25:52.410Z"


@pytest.fixture
def local_time_not_utc() -> Iterator[None]:
    """The process's local time two hours ahead of UTC (a POSIX TZ: no tz database needed),
    so that "local" and "UTC" differ: on a UTC machine they cannot be told apart."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "PRX-2"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_timestamps_are_utc_whatever_the_machine_s_time_zone(local_time_not_utc: None) -> None:
    naive = datetime(2026, 4, 21, 14, 25, 52, 410000)
    aware = datetime(2026, 4, 21, 14, 22, 10, 987654, tzinfo=UTC)
    payload = payload_of(make_row(completed_at=naive, started_at=aware))
    assert payload["completed_at"] == "2026-04-21T14:25:52.410Z"
    assert payload["started_at"] == "2026-04-21T14:22:10.987Z"


def test_none_timestamps_stay_none() -> None:
    payload = payload_of(make_row(started_at=None, completed_at=None, heartbeat_at=None))
    assert payload["started_at"] is None
    assert payload["completed_at"] is None
    assert payload["heartbeat_at"] is None


def test_timestamps_have_milliseconds_and_z() -> None:
    payload = payload_of(make_row())
    for key in ("started_at", "heartbeat_at"):
        assert ISO_UTC_MS.fullmatch(payload[key]), payload[key]


def test_missing_column_raises() -> None:
    row = make_row()
    del row["version"]
    with pytest.raises(KeyError):
        payload_of(row)


def test_encoded_payload_validates_against_schema() -> None:
    payload = payload_of(make_row(started_at=datetime(2026, 4, 21, 15, 0, tzinfo=PLUS_ONE)))
    loaded = TaskPayloadSchema().load(json.loads(encode_payload(payload)))
    assert loaded["id"] == TASK_ID
    assert loaded["started_at"] == datetime(2026, 4, 21, 14, 0, tzinfo=UTC)
    assert loaded["completed_at"] is None
    assert loaded["version"] == 3


def _loaded_with(**changes: Any) -> dict[str, Any]:
    data = json.loads(encode_payload(payload_of(make_row())))
    data.update(changes)
    return TaskPayloadSchema().load(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "done"),
        ("status", "RUNNING"),
        ("progress_pct", 101),
        ("progress_pct", -1),
        ("progress_pct", "50"),
        ("progress_pct", 50.5),
        ("id", "not-a-uuid"),
        ("task_type", ""),
        ("version", 0),
        ("version", "3"),
        ("result_data", []),
        ("started_at", "yesterday"),
        ("message", None),
    ],
)
def test_schema_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        _loaded_with(**{field: value})
    assert field in caught.value.messages


@pytest.mark.parametrize("field", EXPECTED_KEYS)
def test_schema_rejects_a_missing_field(field: str) -> None:
    data = json.loads(encode_payload(payload_of(make_row())))
    del data[field]
    with pytest.raises(ValidationError) as caught:
        TaskPayloadSchema().load(data)
    assert field in caught.value.messages


@pytest.mark.parametrize("status", ["pending", "running", "completed", "failed", "cancelled"])
def test_schema_accepts_every_status(status: str) -> None:
    assert _loaded_with(status=status)["status"] == status


def test_schema_accepts_bounds_of_progress() -> None:
    assert _loaded_with(progress_pct=0)["progress_pct"] == 0
    assert _loaded_with(progress_pct=100)["progress_pct"] == 100


def test_encode_is_compact_and_keeps_non_ascii() -> None:
    payload = payload_of(make_row(message="Your Validation Kit is ready — 3 documents generated."))
    text = encode_payload(payload)
    assert "—" in text
    assert "\\u2014" not in text
    assert ", " not in text.replace("ready — 3", "")  # no separator spaces
    assert '": ' not in text
    assert "\n" not in text
    assert text.startswith('{"id":"b4c5d6e7-8901-2345-abcd-ef0123456789","status":"running"')
    assert json.loads(text) == payload


def test_encode_round_trips_nested_result_data() -> None:
    payload = payload_of(
        make_row(result_data={"document_ids": ["a", "b"], "nested": {"ü": [1, 2.5, None]}})
    )
    assert json.loads(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "pending", "started_at": None, "heartbeat_at": None, "progress_pct": 0},
        {"status": "completed", "completed_at": datetime(2026, 4, 21, 14, 25, 1, 999999)},
        {"status": "failed", "error": "Validation Kit task timed out after 240s"},
        {"status": "cancelled", "completed_at": datetime(2026, 1, 1, 0, 30, tzinfo=PLUS_ONE)},
        {"result_data": {"nested": {"a": [1, 2.5, None, "é"]}, "n": 0}},
        {"message": "", "phase": "", "result_data": {}},
    ],
)
def test_the_hand_built_payload_is_the_schemas_dump(changes: dict[str, Any]) -> None:
    """task_payload skips marshmallow for speed: it must stay what the schema would dump."""
    task = Task.from_row(make_row(**changes))
    built = task_payload(task)
    dumped = TaskPayloadSchema().dump(task)
    assert built == dumped
    assert list(built) == list(dumped) == EXPECTED_KEYS
    assert encode_payload(built) == encode_payload(dumped)


@pytest.mark.parametrize(
    "result_data",
    [
        {},
        {"rows": 12, "ratio": 0.1, "big": 1e16, "text": "é ✓ \u2028", "nested": {"a": [1, None]}},
        {"beyond_64_bits": 123456789012345678901234567890, "minus": -(2**70)},  # jsonb keeps these
    ],
    ids=["empty", "everyday", "huge-integers"],
)
def test_the_wire_form_is_compact_json_that_reads_back_as_the_payload(
    result_data: dict[str, Any],
) -> None:
    """orjson writes it; what it cannot (an integer beyond 64 bits) json does. Either way:
    compact, UTF-8 as is, one line, and the same values read back."""
    payload = payload_of(make_row(result_data=result_data))
    data = payload_bytes(payload)
    assert json.loads(data) == payload
    compact = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert b"\n" not in data and len(data) <= len(compact)  # no spaces, no \u escapes
    assert encode_payload(payload) == data.decode()
