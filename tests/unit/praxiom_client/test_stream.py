"""The subscriber client's pure parts: jittered backoff and the refusal exceptions."""

from __future__ import annotations

import pytest

from praxiom_client import (
    DEFAULT_POLICY,
    Forbidden,
    RetryPolicy,
    StreamRefused,
    TaskNotFound,
    Unauthenticated,
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
    [(401, Unauthenticated), (403, Forbidden), (404, TaskNotFound), (400, StreamRefused)],
)
def test_a_refusal_is_its_own_class_with_the_gateway_s_code_and_message(
    status: int, kind: type[StreamRefused]
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
