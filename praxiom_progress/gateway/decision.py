"""What the gateway may do for a caller, decided by the data layer and told as one value.

The store and the principal answer with a `Decision`; `gateway.errors.refusal` alone turns
one into the HTTP error, so the rule (401, then 404, then 403) lives in SQL and in
`decide`, and its spelling as statuses in one function.
"""

from __future__ import annotations

import enum


class Decision(enum.Enum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # no token, or one unknown, expired or revoked
    NOT_FOUND = "not_found"  # no such task (told only to a valid token)
    FORBIDDEN = "forbidden"  # the task's (or the asked) workspace is not the caller's
    READ_ONLY = "read_only"  # a read-only token asked to change something
    WORKSPACE_REQUIRED = "workspace_required"  # spawn without a workspace_id, and no default


def decide(
    *, authenticated: bool, exists: bool, may_see: bool, read_only: bool, write: bool
) -> Decision:
    """401, then 404, then 403, then read-only: a refusal never says more than the one
    before it would have."""
    if not authenticated:
        return Decision.UNAUTHENTICATED
    if not exists:
        return Decision.NOT_FOUND
    if not may_see:
        return Decision.FORBIDDEN
    if write and read_only:
        return Decision.READ_ONLY
    return Decision.ALLOWED
