-- Workspaces, users, memberships and tokens, as the CLI manages them.

-- create_token --
-- Creates the workspace, the user and the membership when missing, and a token for the user.
WITH workspace AS (
    INSERT INTO workspaces (name) VALUES (%(workspace)s)
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id
), member AS (
    INSERT INTO users (name) VALUES (%(user)s)
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id
), membership AS (
    INSERT INTO workspace_members (workspace_id, user_id)
    SELECT workspace.id, member.id FROM workspace, member
    ON CONFLICT DO NOTHING
), token AS (
    INSERT INTO api_tokens (token_hash, token_prefix, user_id, expires_at)
    SELECT %(token_hash)s, %(token_prefix)s, member.id,
           now() + make_interval(secs => %(expires_in_s)s::double precision)
      FROM member
    RETURNING id, expires_at
)
SELECT workspace.id AS workspace_id, member.id AS user_id, token.id AS token_id,
       token.expires_at
  FROM workspace, member, token;

-- revoke_token --
-- Marks a token revoked; a token revoked earlier keeps its first revocation time.
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
 WHERE token_hash = %(token_hash)s
RETURNING id, revoked_at;

-- remove_member --
-- Removes one user from one workspace, both named.
DELETE FROM workspace_members m
 USING workspaces w, users u
 WHERE m.workspace_id = w.id AND m.user_id = u.id
   AND w.name = %(workspace)s AND u.name = %(user)s
RETURNING m.workspace_id, m.user_id;

-- create_service_token --
-- A token for an internal service: granted the named workspaces (created when missing), or
-- every workspace with all_workspaces; read_only ones may read but never spawn or cancel.
WITH named AS (
    SELECT DISTINCT unnest(%(workspaces)s::text[]) AS name
), workspace AS (
    INSERT INTO workspaces (name) SELECT name FROM named
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id
), token AS (
    INSERT INTO api_tokens
        (token_hash, token_prefix, service_name, all_workspaces, read_only, expires_at)
    VALUES (%(token_hash)s, %(token_prefix)s, %(service)s, %(all_workspaces)s, %(read_only)s,
            now() + make_interval(secs => %(expires_in_s)s::double precision))
    RETURNING id, expires_at
), granted AS (
    INSERT INTO api_token_workspaces (token_id, workspace_id)
    SELECT token.id, workspace.id FROM token, workspace
    RETURNING workspace_id
)
SELECT token.id AS token_id, token.expires_at,
       coalesce((SELECT array_agg(workspace_id) FROM granted), '{}') AS workspace_ids
  FROM token;

-- list_tokens --
-- Every token, never its secret: the principal, the workspaces it acts in (a user's
-- memberships, a service's grants; none listed with all_workspaces), and its times. With a
-- workspace name, only the tokens that may act in it.
SELECT t.id, t.token_prefix, u.name AS user_name, t.service_name, t.all_workspaces,
       t.read_only, t.created_at, t.expires_at, t.last_used_at, t.revoked_at,
       array(SELECT w.name FROM workspaces w
              WHERE w.id IN (SELECT m.workspace_id FROM workspace_members m
                              WHERE m.user_id = t.user_id
                             UNION ALL
                             SELECT g.workspace_id FROM api_token_workspaces g
                              WHERE g.token_id = t.id)
              ORDER BY w.name) AS workspaces
  FROM api_tokens t
  LEFT JOIN users u ON u.id = t.user_id
 WHERE %(workspace)s::text IS NULL
    OR t.all_workspaces
    OR EXISTS (SELECT 1 FROM workspaces w
                WHERE w.name = %(workspace)s
                  AND (EXISTS (SELECT 1 FROM workspace_members m
                                WHERE m.workspace_id = w.id AND m.user_id = t.user_id)
                       OR EXISTS (SELECT 1 FROM api_token_workspaces g
                                   WHERE g.workspace_id = w.id AND g.token_id = t.id)))
 ORDER BY t.created_at, t.id;

-- workspace_exists --
SELECT id FROM workspaces WHERE name = %(workspace)s;

-- revoke_token_by_id --
-- Marks one token revoked by its id (from `token list`); a second revocation keeps the first
-- time.
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
 WHERE id = %(token_id)s
RETURNING id, revoked_at;

-- revoke_member_tokens --
-- Revokes every live token of a user who is a member of the named workspace. A user's token
-- acts in all the user's workspaces, so all of them go (to take one workspace away and keep
-- the tokens, remove the membership instead). No row at all: not a member; one row with a
-- NULL id: a member with no live token.
WITH member AS (
    SELECT u.id FROM users u
      JOIN workspace_members m ON m.user_id = u.id
      JOIN workspaces w ON w.id = m.workspace_id
     WHERE u.name = %(user)s AND w.name = %(workspace)s
), revoked AS (
    UPDATE api_tokens t SET revoked_at = now()
      FROM member
     WHERE t.user_id = member.id AND t.revoked_at IS NULL
    RETURNING t.id
)
SELECT revoked.id FROM member LEFT JOIN revoked ON true;
