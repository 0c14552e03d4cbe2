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
    INSERT INTO api_tokens (token_hash, user_id, expires_at)
    SELECT %(token_hash)s, member.id,
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
    INSERT INTO api_tokens (token_hash, service_name, all_workspaces, read_only, expires_at)
    VALUES (%(token_hash)s, %(service)s, %(all_workspaces)s, %(read_only)s,
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
