"""API tokens: made here, stored only as SHA-256 digests, compared only by digest."""

import hashlib
import secrets

TOKEN_PREFIX = "pxp_"
#: Characters of a token kept in the clear to tell tokens apart in `token list`: the marker and
#: 4 of the 43 random characters (24 of 256 bits; the other 232 stay secret).
SHOWN_LENGTH = len(TOKEN_PREFIX) + 4


def new_token() -> str:
    """A fresh bearer token; the prefix makes a leaked one easy to grep for."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def shown_part(token: str) -> str:
    """The non-secret head of a token, stored beside its digest."""
    return token[:SHOWN_LENGTH]
