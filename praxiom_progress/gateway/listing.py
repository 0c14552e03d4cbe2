"""`GET /api/tasks`: the tasks a caller may see, newest first, a page at a time.

Pages follow each other by keyset, not OFFSET: the cursor is the position of a page's last task
(its `created_at` and `id`), so a page costs its own rows however deep it is, a task spawned
meanwhile never shifts the next page, and the same position always gives the same cursor.
The cursor is opaque to clients (pass `next_cursor` back as it came): its form may change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate

from praxiom_progress.gateway.auth import authenticate, token_hash
from praxiom_progress.gateway.errors import ApiError, json_response
from praxiom_progress.gateway.keys import GATEWAY_STORE, SETTINGS
from praxiom_progress.gateway.replica import Reads
from praxiom_progress.gateway.schemas import TaskRecordSchema, task_record
from praxiom_progress.gateway.store import Principal
from praxiom_progress.taskstate.models import Task
from praxiom_progress.taskstate.sql import load_queries
from praxiom_progress.taskstate.status import TaskStatus

QUERIES = load_queries("praxiom_progress.gateway", "listing.sql")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A cursor: microseconds since 1970 (at most 17 digits: until the year 5138) and the task id.
CURSOR = re.compile(r"([0-9]{1,17})\.([0-9a-f]{32})")
_STATUSES = "|".join(s.value for s in TaskStatus)
_TASK_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # schema.sql's CHECK on task_type


@dataclass(frozen=True)
class Position:
    """Where a page ended: its last task's `created_at` and `id` (the list's sort key)."""

    created_at: datetime
    task_id: UUID

    def cursor(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.task_id.hex}"

    @classmethod
    def from_cursor(cls, cursor: str) -> Position:
        """The position a cursor names; ValueError for anything this gateway did not make."""
        match = CURSOR.fullmatch(cursor)
        if match is None:
            raise ValueError("not a cursor")
        created_at = _EPOCH + timedelta(microseconds=int(match.group(1)))
        return cls(created_at, UUID(hex=match.group(2)))


# -- the query string ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    return value


class _StatusList(fields.Field[list[str]]):
    """`pending,running`: one or more statuses, comma-separated."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        known = [s.value for s in TaskStatus]
        wanted = _text(value).split(",")
        unknown = [part for part in wanted if part not in known]
        if unknown:
            raise ValidationError(
                f"Unknown status {unknown[0]!r}; comma-separated, each one of: {', '.join(known)}"
            )
        return sorted(set(wanted))


class _Cursor(fields.Field[Position]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Position:
        try:
            return Position.from_cursor(_text(value))
        except ValueError:
            raise ValidationError(
                "Not a cursor of this list; pass next_cursor as it came"
            ) from None


class TaskListQuerySchema(Schema):
    """`GET /api/tasks`'s query string; unknown parameters are refused."""

    workspace_id = fields.UUID(
        metadata={"description": "Only this workspace (else every workspace you may see)."}
    )
    status = _StatusList(
        metadata={
            "type": "string",
            "description": "Only these statuses, comma-separated: `pending,running`.",
            "pattern": f"^({_STATUSES})(,({_STATUSES}))*$",
        }
    )
    task_type = fields.String(
        validate=validate.Regexp(_TASK_TYPE, error="Not a task type name"),
        metadata={"description": "Only tasks of this type."},
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(1, MAX_LIMIT),
        metadata={"description": f"Tasks per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."},
    )
    cursor = _Cursor(
        metadata={
            "type": "string",
            "pattern": f"^{CURSOR.pattern}$",
            "description": "The previous page's `next_cursor`, for the page after it.",
        }
    )


class TaskListSchema(Schema):
    """`GET /api/tasks`: a page of task records, newest first."""

    tasks = fields.List(fields.Nested(TaskRecordSchema), required=True)
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
    )


_query_schema = TaskListQuerySchema()


def parse_query(query: Mapping[str, str], keys: Sequence[str]) -> dict[str, Any]:
    """The loaded query string; 422 naming each bad parameter (given twice counts as bad)."""
    repeated = sorted({key for key in keys if list(keys).count(key) > 1})
    if repeated:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "The query string is not valid",
            fields={key: ["Give this parameter once."] for key in repeated},
        )
    try:
        loaded: dict[str, Any] = _query_schema.load(dict(query))
    except ValidationError as exc:
        raise ApiError(
            422, "VALIDATION_ERROR", "The query string is not valid", fields=exc.messages
        ) from exc
    return loaded


# -- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_position: Position | None


class TaskListing:
    """One page of the list, by one of `listing.sql`'s three queries: one workspace, several,
    or all of them."""

    def __init__(self, db: Reads) -> None:
        self.db = db  # a Database, or the standby's routing (DATABASE_READ_URL)

    async def page(
        self,
        workspaces: Sequence[UUID] | None,
        *,
        limit: int,
        after: Position | None = None,
        statuses: Sequence[str] | None = None,
        task_type: str | None = None,
    ) -> Page:
        """`workspaces` None: every workspace's tasks."""
        params: dict[str, Any] = {
            "row_limit": limit + 1,
            "after_created": after.created_at if after else None,
            "after_id": after.task_id if after else None,
            "statuses": list(statuses) if statuses else None,
            "task_type": task_type,
        }
        if workspaces is None:
            query = "list_all_tasks"
        elif len(workspaces) == 1:
            query, params["workspace_id"] = "list_workspace_tasks", workspaces[0]
        else:
            query, params["workspace_ids"] = "list_tasks_in_workspaces", list(workspaces)
        rows = await self.db.fetch_all(QUERIES[query], params)
        tasks = [Task.from_row(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return Page(tasks, None)
        last = tasks[-1]
        assert last.created_at is not None  # every row has it
        return Page(tasks, Position(last.created_at, last.id))


def visible_workspaces(principal: Principal, requested: UUID | None) -> list[UUID] | None:
    """The workspaces to list (None: all of them); 403 for one the caller may not see."""
    if requested is not None:
        if principal.all_workspaces or requested in principal.workspace_ids:
            return [requested]
        raise ApiError(403, "FORBIDDEN", "You may not see this workspace's tasks")
    if principal.all_workspaces:
        return None
    return sorted(principal.workspace_ids)


async def list_tasks(request: web.Request) -> web.Response:
    """401 without a valid token, then 422 for a bad query string, then 403 for a workspace
    the caller may not see."""
    app = request.app
    digest = token_hash(request, app[SETTINGS].session_cookie_name)
    principal = await authenticate(app[GATEWAY_STORE], digest)
    query = parse_query(request.query, [key for key, _ in request.query.items()])
    workspaces = visible_workspaces(principal, query.get("workspace_id"))
    if workspaces == []:
        page = Page([], None)  # a caller in no workspace sees nothing
    else:
        page = await TaskListing(app[GATEWAY_STORE].reads).page(
            workspaces,
            limit=query["limit"],
            after=query.get("cursor"),
            statuses=query.get("status"),
            task_type=query.get("task_type"),
        )
    cursor = page.next_position.cursor() if page.next_position else None
    return json_response({"tasks": [task_record(t) for t in page.tasks], "next_cursor": cursor})
