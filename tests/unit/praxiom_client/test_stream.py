"""The subscriber client's pure parts: jittered backoff and the refusal exceptions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from praxiom_client import (
    DEFAULT_POLICY,
    Conflict,
    Forbidden,
    Invalid,
    Refused,
    RetryPolicy,
    TaskNotFound,
    Unauthenticated,
    retry_after_seconds,
)
from praxiom_client.errors import refused


def test_backoff_doubles_to_its_cap_and_jitter_only_shortens_it() -> None:
    plain = RetryPolicy()
    assert [plain.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    jittered = RetryPolicy(jitter=0.5)
    assert jittered.delay(1, rand=lambda: 0.0) == 1.0
    assert jittered.delay(1, rand=lambda: 1.0) == 0.5
    delays = {DEFAULT_POLICY.delay(3) for _ in range(50)}
    assert len(delays) > 1 and all(2.0 <= d <= 4.0 for d in delays)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, Invalid),
        (401, Unauthenticated),
        (403, Forbidden),
        (404, TaskNotFound),
        (409, Conflict),
        (413, Invalid),
        (422, Invalid),
        (500, Refused),
        (503, Refused),
    ],
)
def test_a_refusal_is_its_own_class_with_the_gateway_s_code_and_message(
    status: int, kind: type[Refused]
) -> None:
    body = '{"error": {"code": "SOME_CODE", "message": "Because"}}'
    error = refused(status, "Reason", body)
    assert type(error) is kind
    assert (error.status, error.code, error.message, error.body) == (
        status,
        "SOME_CODE",
        "Because",
        body,
    )
    assert str(error) == f"{status} SOME_CODE: Because"


def test_a_refusal_without_the_json_error_body_says_the_status_and_reason() -> None:
    error = refused(403, "Forbidden", "<html>nginx</html>")
    assert isinstance(error, Forbidden)
    assert (error.code, error.message, str(error)) == (None, None, "403 Forbidden")


def test_a_validation_error_carries_its_fields_and_a_conflict_the_task() -> None:
    invalid = refused(
        422,
        "Unprocessable Entity",
        '{"error": {"code": "VALIDATION_ERROR", "message": "Bad"}, "fields": {"a": ["no"]}}',
    )
    assert invalid.fields == {"a": ["no"]} and invalid.task is None
    conflict = refused(
        409, "Conflict", '{"error": {"code": "CONFLICT", "message": "Done"}, "task": {"id": "x"}}'
    )
    assert conflict.task == {"id": "x"} and conflict.fields is None


def test_a_retry_after_is_waited_out_in_full_but_never_past_the_policy_s_bound() -> None:
    policy = RetryPolicy(jitter=0.5, max_failures=3, max_retry_after_s=60)
    assert policy.retry_delay(1, 3.0, rand=lambda: 1.0) == 3.0  # longer than the backoff
    assert policy.retry_delay(1, 0.1, rand=lambda: 0.0) == 1.0  # shorter: the backoff wins
    assert policy.retry_delay(1, None, rand=lambda: 0.0) == 1.0
    assert policy.retry_delay(1, 61.0) is None  # the server asks for too long: give up
    assert policy.retry_delay(3, 1.0) is None  # as many failures as allowed: give up


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 30, 1, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 120 ") == 120.0
    assert retry_after_seconds("Mon, 30 Nov 2026 01:00:05 GMT", now) == 5.0
    assert retry_after_seconds("Mon, 30 Nov 2026 00:59:00 GMT", now) == 0.0  # already past
    for junk in (None, "", "soon", "-1", "1.5", "\u0661"):
        assert retry_after_seconds(junk, now) is None, junk
