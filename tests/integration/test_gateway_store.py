"""The gateway's authorize query answers many requests in one statement, each its own answer."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from praxiom_progress.gateway.decision import Decision
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.taskstate.accounts import AccountStore, IssuedToken
from praxiom_progress.taskstate.db import Database
from praxiom_progress.taskstate.payloads import task_payload
from praxiom_progress.taskstate.store import TaskStore
from praxiom_progress.taskstate.tokens import hash_token
from tests.conftest import spawn


async def test_concurrent_authorizations_share_a_statement_and_keep_their_own_answers(
    db: Database, task_store: TaskStore, member: IssuedToken
) -> None:
    other = await AccountStore(db).create_token(workspace="other", user="olga")
    mine = await spawn(task_store, member.workspace_id, "research")
    theirs = await spawn(task_store, other.workspace_id, "research")
    store = GatewayStore(db)
    statements: list[int] = []
    run_many = store._authorize._run_many

    async def counting(requests: list[tuple[bytes, object]]) -> list[object]:
        statements.append(len(requests))
        return await run_many(requests)  # type: ignore[arg-type]

    store._authorize._run_many = counting  # type: ignore[assignment]
    ann, unknown = hash_token(member.token), hash_token("no-such-token")
    requests = [
        (ann, mine),  # member: the row
        (ann, theirs),  # not a member: no access
        (ann, uuid4()),  # no such task
        (unknown, mine),  # bad token: nothing about the task
        (ann, None),  # a malformed id: the principal only
    ] * 20
    answers = await asyncio.gather(*(store.authorize_task(h, t) for h, t in requests))

    assert len(statements) < len(requests) / 10, statements  # grouped, not one each
    for (token_hash, task_id), access in zip(requests, answers, strict=True):
        if token_hash == unknown:
            assert access.caller is None and access.task is None
            continue
        assert access.caller is not None and access.caller.user_id == member.user_id
        if task_id == mine:
            assert access.decision is Decision.ALLOWED
            assert access.task is not None and access.task.id == mine
        elif task_id == theirs:  # refused: the answer carries the decision, never the task
            assert access.decision is Decision.FORBIDDEN and access.task is None
        else:
            assert access.task is None


async def test_a_streams_connect_is_answered_as_a_request_is_with_the_head_only(
    db: Database, task_store: TaskStore, member: IssuedToken
) -> None:
    """`authorize_stream` decides as `authorize_task` does, for every kind of caller, and
    gives of the task its status and version only; `snapshot` then reads its payload."""
    other = await AccountStore(db).create_token(workspace="other", user="olga")
    mine = await spawn(task_store, member.workspace_id, "research")
    theirs = await spawn(task_store, other.workspace_id, "research")
    store = GatewayStore(db)
    ann, unknown = hash_token(member.token), hash_token("no-such-token")
    requests = [(ann, mine), (ann, theirs), (ann, uuid4()), (unknown, mine)] * 5
    streams = await asyncio.gather(*(store.authorize_stream(h, t) for h, t in requests))
    full = await asyncio.gather(*(store.authorize_task(h, t) for h, t in requests))
    for stream, request in zip(streams, full, strict=True):
        assert stream.decision is request.decision
        assert stream.caller == request.caller
        if stream.caller is not None:  # one string for the log context and the stream's slot
            assert stream.caller.key is stream.caller.key
        if request.task is None:
            assert stream.task is None
        else:
            assert stream.task is not None
            assert (stream.task.status, stream.task.version) == (
                request.task.status,
                request.task.version,
            )
    task = await store.snapshot(mine, 0)
    row = (await store.authorize_task(ann, mine)).task
    assert task is not None and row is not None
    assert task_payload(task) == task_payload(row)
    assert await store.snapshot(uuid4(), 0) is None


async def test_a_re_check_reads_the_rows_of_quiet_streams_tasks_only(
    db: Database, task_store: TaskStore, member: IssuedToken
) -> None:
    """The idle sweeper's `reread_streams` answers every stream's caller and its task's
    existence, but decodes a row only for the tasks it was asked the rows of: a busy stream's
    re-check needs none."""
    other = await AccountStore(db).create_token(workspace="other", user="olga")
    quiet = await spawn(task_store, member.workspace_id, "research")
    busy = await spawn(task_store, member.workspace_id, "research")
    theirs = await spawn(task_store, other.workspace_id, "research")
    gone = uuid4()
    store = GatewayStore(db)
    ann, unknown = hash_token(member.token), hash_token("no-such-token")
    pairs = [(quiet, ann), (busy, ann), (busy, unknown), (theirs, ann), (gone, ann)]

    reread = await store.reread_streams(pairs, rows_of={quiet, theirs, gone})

    assert reread.present == {quiet, busy, theirs}  # the deleted one is missing
    assert set(reread.tasks) == {quiet, theirs}  # asked for, and existing
    row = await task_store.get_task(quiet)
    assert row is not None and task_payload(reread.tasks[quiet]) == task_payload(row)
    assert reread.refused == {  # the busy task's callers are checked all the same
        (busy, unknown): Decision.UNAUTHENTICATED,
        (theirs, ann): Decision.FORBIDDEN,
    }
    # Asked for no row (the re-check of every stream after an access change): callers only.
    callers_only = await store.reread_streams(pairs, primary=True)
    assert callers_only.tasks == {} and callers_only.present == reread.present
    assert callers_only.refused == reread.refused
