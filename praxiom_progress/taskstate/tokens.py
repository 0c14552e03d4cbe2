"""API tokens: made here, stored only as SHA-256 digests, compared only by digest."""

import hashlib
import secrets

TOKEN_PREFIX = "pxp_"


def new_token() -> str:
    """A fresh bearer token; the prefix makes a leaked one easy to grep for."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
