"""What can go wrong while watching a task, one class per thing a caller may handle apart.

`StreamRefused` subclasses carry the HTTP status and the gateway's JSON error
`code` and `message`: `Unauthenticated` (401: the token is missing, expired or
revoked), `Forbidden` (403: not a member of the task's workspace, possibly
since a reconnection), `TaskNotFound` (404).
"""

from __future__ import annotations

import json


class StreamError(Exception):
    """Following the stream failed; the message is one line."""


class StreamRefused(StreamError):
    """The gateway answered with an error status that retrying will not change."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.code, self.message = _error_fields(body)
        if self.code and self.message:
            super().__init__(f"{status} {self.code}: {self.message}")
        else:
            super().__init__(f"{status} {reason}".strip())


class Unauthenticated(StreamRefused):
    """401: no valid token."""


class Forbidden(StreamRefused):
    """403: the token's user is not a member of the task's workspace."""


class TaskNotFound(StreamRefused):
    """404: no such task (or not a task id)."""


class StreamUnreachable(StreamError):
    """The first connection failed: there is nothing to reconnect to."""


class StreamLost(StreamError):
    """The stream dropped and every reconnection since has failed."""


class StreamBroken(StreamError):
    """The server sent something that is not a task's progress stream."""


_REFUSALS: dict[int, type[StreamRefused]] = {
    401: Unauthenticated,
    403: Forbidden,
    404: TaskNotFound,
}


def refused(status: int, reason: str, body: str) -> StreamRefused:
    """The exception for an error answer, by status."""
    return _REFUSALS.get(status, StreamRefused)(status, reason, body)


def _error_fields(body: str) -> tuple[str | None, str | None]:
    """`code` and `message` of the gateway's `{"error": {...}}`, if that is what `body` is."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
