"""Workspaces, users, memberships and API tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.sql import load_queries
from praxiom_progress.taskstate.tokens import hash_token, new_token

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

    async def remove_member(self, *, workspace: str, user: str) -> bool:
        """True when the user was a member and no longer is."""
        row = await self.db.fetch_one(
            QUERIES["remove_member"], {"workspace": workspace, "user": user}
        )
        return row is not None
