"""What can go wrong talking to the gateway, one class per thing a caller may handle apart.

`Refused` and its subclasses carry the HTTP status and the gateway's JSON error
`code`, `message` and (for a validation error) `fields`: `Unauthenticated` (401:
the token is missing, expired or revoked), `Forbidden` (403: not allowed in the
task's workspace, possibly since a reconnection, or a read-only token that tried
to write), `TaskNotFound` (404), `Invalid` (400, 413, 422: the request, with the
gateway's `fields`), `Conflict` (409: cancelling a finished task, with its `task`).
A 429 or 503 is retried first; one that outlasts the retries is a plain `Refused`.
"""

from __future__ import annotations

import json
from typing import Any


class PraxiomError(Exception):
    """A call to the gateway failed; the message is one line."""


class Refused(PraxiomError):
    """The gateway answered with an error status that retrying will not change."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        document = _document(body)
        self.code, self.message = _error_fields(document)
        fields, task = document.get("fields"), document.get("task")
        self.fields: dict[str, Any] | None = fields if isinstance(fields, dict) else None
        self.task: dict[str, Any] | None = task if isinstance(task, dict) else None
        if self.code and self.message:
            super().__init__(f"{status} {self.code}: {self.message}")
        else:
            super().__init__(f"{status} {reason}".strip())


class Unauthenticated(Refused):
    """401: no valid token."""


class Forbidden(Refused):
    """403: the token may not see (or, read-only, may not change) the task or workspace."""


class TaskNotFound(Refused):
    """404: no such task (or not a task id)."""


class Invalid(Refused):
    """400, 413 or 422: the request itself is wrong; `fields` names what, when it can."""


class Conflict(Refused):
    """409: the task has already finished; `task` is its payload."""


class Unreachable(PraxiomError):
    """The first connection failed: nothing answered at `url`; `reason` says why in a few
    words ("Connection refused", "timed out")."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


class StreamError(PraxiomError):
    """Following a task's stream failed after it had started."""


class StreamLost(StreamError):
    """The stream dropped and every reconnection since has failed."""


class StreamBroken(StreamError):
    """The server sent something that is not a task's progress stream."""


#: The names the first release gave these (kept so code written for it still runs).
StreamRefused = Refused
StreamUnreachable = Unreachable

_REFUSALS: dict[int, type[Refused]] = {
    400: Invalid,
    401: Unauthenticated,
    403: Forbidden,
    404: TaskNotFound,
    409: Conflict,
    413: Invalid,
    422: Invalid,
}


def refused(status: int, reason: str, body: str) -> Refused:
    """The exception for an error answer, by status."""
    return _REFUSALS.get(status, Refused)(status, reason, body)


def _document(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _error_fields(document: dict[str, Any]) -> tuple[str | None, str | None]:
    """`code` and `message` of the gateway's `{"error": {...}}`, if that is what it is."""
    error = document.get("error")
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
