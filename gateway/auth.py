"""Who is calling: a bearer token from the Authorization header or the session cookie.

EventSource cannot send headers, so browsers authenticate with the cookie.
Tokens are only ever compared by their SHA-256 digest.
"""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from gateway.access_log import note_principal
from gateway.errors import forbidden, not_found, read_only, unauthenticated
from gateway.store import Caller, GatewayStore
from taskstate.db import Row
from taskstate.tokens import hash_token

_MAX_TOKEN_LENGTH = 512


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
) -> tuple[Caller, Row]:
    """The caller and the task row, if the caller may see it (and, with `write`, change it):
    401, then 404, then 403, in that order.

    With a bad token nothing about the task is looked up, so a refusal says nothing of it.
    """
    access = await store.authorize_task(digest, task_id)
    caller = access.caller
    if caller is None:
        raise unauthenticated()
    note_principal(caller.key)
    if access.task is None:
        raise not_found()
    if not access.is_member:
        raise forbidden()
    if write and caller.read_only:
        raise read_only()
    return caller, access.task
