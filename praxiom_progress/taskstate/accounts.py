"""Workspaces, users, memberships and API tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.sql import load_queries
from praxiom_progress.taskstate.tokens import hash_token, new_token, shown_part

QUERIES = load_queries("praxiom_progress.taskstate", "accounts.sql")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    user_id: UUID
    workspace_id: UUID
    expires_at: datetime | None


@dataclass(frozen=True)
class IssuedServiceToken:
    token: str
    token_id: UUID
    service: str
    workspace_ids: frozenset[UUID]  # the grants; empty with all_workspaces
    all_workspaces: bool
    read_only: bool
    expires_at: datetime | None


@dataclass(frozen=True)
class TokenListing:
    """One token as `token list` shows it: everything but the secret."""

    id: UUID
    prefix: str | None  # the first characters; None for a token made before they were kept
    user: str | None
    service: str | None
    workspaces: tuple[str, ...]  # a user's memberships or a service's grants, by name
    all_workspaces: bool
    read_only: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NoSuchWorkspace(LookupError):
    """A workspace name that names none."""


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_token(
        self, *, workspace: str, user: str, expires_in_s: float | None = None
    ) -> IssuedToken:
        """Issue a token for `user`, creating the workspace, user and membership when missing."""
        token = new_token()
        row = await self.db.fetch_one(
            QUERIES["create_token"],
            {
                "workspace": workspace,
                "user": user,
                "token_hash": hash_token(token),
                "token_prefix": shown_part(token),
                "expires_in_s": expires_in_s,
            },
        )
        assert row is not None
        return IssuedToken(token, row["user_id"], row["workspace_id"], row["expires_at"])

    async def create_service_token(
        self,
        *,
        service: str,
        workspaces: Sequence[str] = (),
        all_workspaces: bool = False,
        read_only: bool = False,
        expires_in_s: float | None = None,
    ) -> IssuedServiceToken:
        """Issue a token for an internal service, granted `workspaces` (created when missing)
        or, only when asked for explicitly, every workspace."""
        if all_workspaces == bool(workspaces):
            raise ValueError("grant named workspaces or all workspaces, not both nor neither")
        token = new_token()
        row = await self.db.fetch_one(
            QUERIES["create_service_token"],
            {
                "service": service,
                "workspaces": list(workspaces),
                "all_workspaces": all_workspaces,
                "read_only": read_only,
                "token_hash": hash_token(token),
                "token_prefix": shown_part(token),
                "expires_in_s": expires_in_s,
            },
        )
        assert row is not None
        return IssuedServiceToken(
            token,
            row["token_id"],
            service,
            frozenset(row["workspace_ids"]),
            all_workspaces,
            read_only,
            row["expires_at"],
        )

    async def revoke_token(self, token: str) -> bool:
        """True when the token exists (it is revoked now, or was already)."""
        row = await self.db.fetch_one(QUERIES["revoke_token"], {"token_hash": hash_token(token)})
        return row is not None

    async def list_tokens(self, workspace: str | None = None) -> list[TokenListing]:
        """Every token (or those that may act in `workspace`), oldest first."""
        if workspace is not None:
            found = await self.db.fetch_one(QUERIES["workspace_exists"], {"workspace": workspace})
            if found is None:
                raise NoSuchWorkspace(workspace)
        rows = await self.db.fetch_all(QUERIES["list_tokens"], {"workspace": workspace})
        return [
            TokenListing(
                row["id"],
                row["token_prefix"],
                row["user_name"],
                row["service_name"],
                tuple(row["workspaces"]),
                row["all_workspaces"],
                row["read_only"],
                row["created_at"],
                row["expires_at"],
                row["last_used_at"],
                row["revoked_at"],
            )
            for row in rows
        ]

    async def revoke_token_by_id(self, token_id: UUID) -> bool:
        """True when the token exists (it is revoked now, or was already)."""
        row = await self.db.fetch_one(QUERIES["revoke_token_by_id"], {"token_id": token_id})
        return row is not None

    async def revoke_member_tokens(self, *, user: str, workspace: str) -> int | None:
        """How many live tokens of `user` were revoked; None when `user` is not a member of
        `workspace`."""
        rows = await self.db.fetch_all(
            QUERIES["revoke_member_tokens"], {"user": user, "workspace": workspace}
        )
        if not rows:
            return None
        return sum(1 for row in rows if row["id"] is not None)

    async def remove_member(self, *, workspace: str, user: str) -> bool:
        """True when the user was a member and no longer is."""
        row = await self.db.fetch_one(
            QUERIES["remove_member"], {"workspace": workspace, "user": user}
        )
        return row is not None
