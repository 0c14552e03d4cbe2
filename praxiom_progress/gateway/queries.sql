-- The gateway's reads. Auth, access and the task row come back together,
-- so every request and every stream (re)connection costs one round trip.
-- A token is a user's (acting for the user's memberships) or a service's (acting for the
-- workspaces granted to it, or for all of them when it was created with that flag).

-- authorize_task --
-- One row per (token_hash, task_id) pair, in the order given (`n`): the requests that
-- arrived while the previous statement was in flight are answered together.
-- token_id is NULL for a missing, expired or revoked token; the task columns are NULL
-- when there is no such task (or no valid token: an unauthenticated caller learns
-- nothing about tasks). A missing task and one in another workspace take the same
-- lookups, so neither answers faster.
SELECT req.n,
       caller.token_id, caller.user_id, caller.service_name, caller.read_only,
       t.id IS NOT NULL AS task_exists,
       praxiom_may_see(caller.token_id, caller.user_id, caller.all_workspaces, t.workspace_id)
           AS may_see,
       t.*
  FROM unnest(%(token_hashes)s::bytea[], %(task_ids)s::uuid[]) WITH ORDINALITY
       AS req (token_hash, task_id, n)
  LEFT JOIN LATERAL (
       SELECT id AS token_id, user_id, service_name, all_workspaces, read_only FROM api_tokens
        WHERE token_hash = req.token_hash
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
  ) AS caller ON true
  LEFT JOIN background_tasks t
    ON t.id = req.task_id AND caller.token_id IS NOT NULL
 ORDER BY req.n;

-- authorize_stream --
-- `authorize_task` for a stream's connect: the same lookups and answers, but of the task only
-- its status and version (may it be watched; is it over; is the client's Last-Event-ID
-- behind it). The payload is read by `tasks_by_id` once the stream has subscribed.
SELECT req.n,
       caller.token_id, caller.user_id, caller.service_name, caller.read_only,
       t.id IS NOT NULL AS task_exists,
       praxiom_may_see(caller.token_id, caller.user_id, caller.all_workspaces, t.workspace_id)
           AS may_see,
       t.status, t.version
  FROM unnest(%(token_hashes)s::bytea[], %(task_ids)s::uuid[]) WITH ORDINALITY
       AS req (token_hash, task_id, n)
  LEFT JOIN LATERAL (
       SELECT id AS token_id, user_id, service_name, all_workspaces, read_only FROM api_tokens
        WHERE token_hash = req.token_hash
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
  ) AS caller ON true
  LEFT JOIN background_tasks t
    ON t.id = req.task_id AND caller.token_id IS NOT NULL
 ORDER BY req.n;

-- principal_workspaces --
-- The token's principal and every workspace it may act in (a user's memberships, a service's
-- grants; all_workspaces for a service granted every one); no row for a bad token.
SELECT tok.id AS token_id, tok.user_id, tok.service_name, tok.read_only, tok.all_workspaces,
       CASE WHEN tok.user_id IS NOT NULL THEN
                coalesce((SELECT array_agg(m.workspace_id) FROM workspace_members m
                           WHERE m.user_id = tok.user_id), '{}')
            ELSE coalesce((SELECT array_agg(g.workspace_id) FROM api_token_workspaces g
                            WHERE g.token_id = tok.id), '{}')
       END AS workspace_ids
  FROM api_tokens tok
 WHERE tok.token_hash = %(token_hash)s
   AND tok.revoked_at IS NULL
   AND (tok.expires_at IS NULL OR tok.expires_at > now());

-- reread_streams --
-- The idle re-read of many open streams in one round trip, re-checking each stream's caller
-- as the connect did: each task's row once, with the token digests among its streams' that
-- no longer count (unauthenticated: expired, revoked) or may no longer see the task
-- (forbidden: membership removed, grant gone). A missing task has no row. The payload's
-- columns only (a re-read is re-sent, never shown as a record: params can be large), and
-- only of the tasks in `row_ids` (those with a quiet stream, which gets a re-emit); a busy
-- stream's re-check needs its caller and its task's existence, so its task's columns are NULL.
WITH pairs AS (
    SELECT DISTINCT p.task_id, p.token_hash
      FROM unnest(%(task_ids)s::uuid[], %(token_hashes)s::bytea[]) AS p(task_id, token_hash)
), checked AS (
    SELECT p.task_id, p.token_hash, caller.token_id IS NOT NULL AS token_ok,
           praxiom_may_see(caller.token_id, caller.user_id, caller.all_workspaces,
                           t.workspace_id) AS is_member
      FROM pairs p
      JOIN background_tasks t ON t.id = p.task_id
      LEFT JOIN LATERAL (
           SELECT id AS token_id, user_id, all_workspaces FROM api_tokens
            WHERE token_hash = p.token_hash
              AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > now())
      ) AS caller ON true
)
SELECT t.id, payload.status, payload.task_type, payload.progress_pct, payload.phase,
       payload.message, payload.started_at, payload.completed_at, payload.heartbeat_at,
       payload.error, payload.result_data, payload.version,
       coalesce((SELECT array_agg(c.token_hash) FROM checked c
                  WHERE c.task_id = t.id AND NOT c.token_ok), '{}') AS refused_unauthenticated,
       coalesce((SELECT array_agg(c.token_hash) FROM checked c
                  WHERE c.task_id = t.id AND c.token_ok AND NOT c.is_member),
                '{}') AS refused_forbidden
  FROM background_tasks t
  LEFT JOIN LATERAL (
       SELECT t.status, t.task_type, t.progress_pct, t.phase, t.message, t.started_at,
              t.completed_at, t.heartbeat_at, t.error, t.result_data, t.version
        WHERE t.id = ANY(%(row_ids)s::uuid[])
  ) AS payload ON true
 WHERE t.id IN (SELECT task_id FROM pairs);

-- authorize_workspace --
-- May this token see this workspace's tasks? One row: token_id NULL for a missing, expired or
-- revoked token (then nothing about the workspace is looked up), workspace_exists, may_see.
SELECT caller.token_id, caller.user_id, caller.service_name, caller.read_only,
       ws.id IS NOT NULL AS workspace_exists,
       praxiom_may_see(caller.token_id, caller.user_id, caller.all_workspaces, ws.id) AS may_see
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
       SELECT id AS token_id, user_id, service_name, all_workspaces, read_only FROM api_tokens
        WHERE token_hash = %(token_hash)s
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
  ) AS caller ON true
  LEFT JOIN workspaces ws ON ws.id = %(workspace_id)s AND caller.token_id IS NOT NULL;

-- workspace_snapshot --
-- A workspace stream's first read, with its caller re-checked: every task not finished, plus
-- those finished within `recent_s`, newest first, at most `max_tasks`. At least one row: `mark`
-- (this statement's snapshot xmin, the stream's next event id), `allowed`, and the task
-- columns (NULL when there is no task, or no access).
WITH access AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS mark,
           coalesce((SELECT praxiom_may_see(tok.id, tok.user_id, tok.all_workspaces,
                                            %(workspace_id)s)
                       FROM api_tokens tok
                      WHERE tok.token_hash = %(token_hash)s
                        AND tok.revoked_at IS NULL
                        AND (tok.expires_at IS NULL OR tok.expires_at > now())), false)
               AS allowed
)
SELECT access.mark, access.allowed, t.*
  FROM access
  LEFT JOIN LATERAL (
       SELECT b.* FROM background_tasks b
        WHERE access.allowed AND b.workspace_id = %(workspace_id)s
          AND (b.completed_at IS NULL
               OR b.completed_at > now() - make_interval(secs => %(recent_s)s))
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT %(max_tasks)s
  ) AS t ON true;

-- workspace_changes --
-- A workspace stream's catch-up (a reconnect's Last-Event-ID, a poll, the periodic re-check),
-- with its caller re-checked: every task running now (its progress writes leave changed_xid
-- alone, schema.sql) and every other whose last write's transaction is not below `since` (an
-- earlier read's mark), newest first, at most `max_tasks`. Rows as `workspace_snapshot`'s,
-- plus `known`: false when `since` is past every transaction begun (not a mark of ours).
WITH access AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS mark,
           %(since)s::bigint::text::xid8 <= pg_snapshot_xmax(pg_current_snapshot()) AS known,
           coalesce((SELECT praxiom_may_see(tok.id, tok.user_id, tok.all_workspaces,
                                            %(workspace_id)s)
                       FROM api_tokens tok
                      WHERE tok.token_hash = %(token_hash)s
                        AND tok.revoked_at IS NULL
                        AND (tok.expires_at IS NULL OR tok.expires_at > now())), false)
               AS allowed
)
SELECT access.mark, access.known, access.allowed, t.*
  FROM access
  LEFT JOIN LATERAL (
       SELECT b.* FROM background_tasks b
        WHERE access.allowed AND b.workspace_id = %(workspace_id)s
          AND (b.changed_xid >= %(since)s::bigint::text::xid8 OR b.status = 'running')
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT %(max_tasks)s
  ) AS t ON true;

-- workspace_access --
-- Many workspace streams' callers re-checked at once (access was taken away somewhere): one
-- row per (workspace_id, token_hash) pair, in the order given.
SELECT req.n, caller.token_id IS NOT NULL AS token_ok,
       praxiom_may_see(caller.token_id, caller.user_id, caller.all_workspaces,
                       req.workspace_id) AS may_see
  FROM unnest(%(workspace_ids)s::uuid[], %(token_hashes)s::bytea[]) WITH ORDINALITY
       AS req (workspace_id, token_hash, n)
  LEFT JOIN LATERAL (
       SELECT id AS token_id, user_id, all_workspaces FROM api_tokens
        WHERE token_hash = req.token_hash
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
  ) AS caller ON true
 ORDER BY req.n;
-- tasks_by_id --
-- What a gateway sends of tasks its streams watch: the first events of streams that have just
-- subscribed (their callers were authorized a moment before, by `authorize_stream`), and the
-- tasks spawned or cancelled without a publish (gateway.written). The payload's columns and
-- the workspace (its channel); a missing id has no row.
SELECT id, status, task_type, progress_pct, phase, message, started_at, completed_at,
       heartbeat_at, error, result_data, version, workspace_id
  FROM background_tasks
 WHERE id = ANY(%(task_ids)s::uuid[]);
