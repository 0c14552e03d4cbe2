-- The gateway's reads. Auth, membership and the task row come back together,
-- so every request and every stream (re)connection costs one round trip.

-- authorize_task --
-- One row per (token_hash, task_id) pair, in the order given (`n`): the requests that
-- arrived while the previous statement was in flight are answered together.
-- user_id is NULL for a missing, expired or revoked token; the task columns are NULL
-- when there is no such task (or no valid token: an unauthenticated caller learns
-- nothing about tasks).
SELECT req.n,
       principal.user_id,
       t.id IS NOT NULL AS task_exists,
       EXISTS (
           SELECT 1 FROM workspace_members m
            WHERE m.workspace_id = t.workspace_id AND m.user_id = principal.user_id
       ) AS is_member,
       t.*
  FROM unnest(%(token_hashes)s::bytea[], %(task_ids)s::uuid[]) WITH ORDINALITY
       AS req (token_hash, task_id, n)
  LEFT JOIN LATERAL (
       SELECT user_id FROM api_tokens
        WHERE token_hash = req.token_hash
          AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
  ) AS principal ON true
  LEFT JOIN background_tasks t
    ON t.id = req.task_id AND principal.user_id IS NOT NULL
 ORDER BY req.n;

-- principal_workspaces --
-- The token's user and every workspace it is a member of; no row for a bad token.
SELECT tok.user_id,
       coalesce(array_agg(m.workspace_id) FILTER (WHERE m.workspace_id IS NOT NULL),
                '{}') AS workspace_ids
  FROM api_tokens tok
  LEFT JOIN workspace_members m ON m.user_id = tok.user_id
 WHERE tok.token_hash = %(token_hash)s
   AND tok.revoked_at IS NULL
   AND (tok.expires_at IS NULL OR tok.expires_at > now())
 GROUP BY tok.user_id;
