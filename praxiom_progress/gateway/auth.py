"""Who is calling: a bearer token from the Authorization header or the session cookie.

EventSource cannot send headers, so browsers authenticate with the cookie.
Tokens are only ever compared by their SHA-256 digest.
"""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from aiohttp import web

from praxiom_progress.gateway.access_log import note_principal
from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.errors import refusal, unauthenticated
from praxiom_progress.gateway.store import Caller, GatewayStore, Principal, TaskAccess
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.tokens import hash_token

_MAX_TOKEN_LENGTH = 512

T = TypeVar("T")


def token_hash(request: web.Request, cookie_name: str) -> bytes:
    """The caller's token digest; 401 when there is none or it is malformed."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("Authorization must be 'Bearer <token>'")
        token = token.strip()
    else:
        token = request.cookies.get(cookie_name, "").strip()
        if not token:
            raise unauthenticated()
    if len(token) > _MAX_TOKEN_LENGTH or not token.isprintable():
        raise unauthenticated()
    return hash_token(token)


def parse_task_id(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


async def authorize(
    store: GatewayStore, digest: bytes, task_id: UUID | None, *, write: bool = False
) -> tuple[Caller, Task]:
    """The caller and the task, if the caller may see it (and, with `write`, change it);
    otherwise the refusal the store decided (401, then 404, then 403).

    With a bad token nothing about the task is looked up, so a refusal says nothing of it.
    """
    return allowed(await store.authorize_task(digest, task_id, write=write))


def allowed(access: TaskAccess[T]) -> tuple[Caller, T]:
    """The caller and what it may see of the task; the refusal the store decided otherwise."""
    if access.caller is not None:
        note_principal(access.caller.key)
    if access.decision is not Decision.ALLOWED:
        raise refusal(access.decision)
    assert access.caller is not None and access.task is not None  # what ALLOWED means
    return access.caller, access.task


async def authenticate(store: GatewayStore, digest: bytes, *, write: bool = False) -> Principal:
    """The token's principal (401 without one; with `write`, 403 for a read-only token)."""
    principal = await store.principal(digest)
    if principal is None:
        raise refusal(Decision.UNAUTHENTICATED)
    note_principal(principal.caller.key)
    if write and principal.caller.read_only:
        raise refusal(Decision.READ_ONLY)
    return principal
