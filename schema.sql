-- praxiom-progress: the whole database schema.
-- Idempotent: `praxiom-progress migrate` applies it on every start, so every
-- statement must be safe to run again on a database that already has it.

CREATE TABLE IF NOT EXISTS workspaces (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS workspace_members (
    workspace_id uuid        NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX IF NOT EXISTS workspace_members_user_idx ON workspace_members (user_id);

-- Only the SHA-256 digest of a token is kept: a leaked table grants nothing.
CREATE TABLE IF NOT EXISTS api_tokens (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_user_idx ON api_tokens (user_id);

-- Service tokens (internal subscribers) belong to no user: they name a service and are granted
-- workspaces one by one (api_token_workspaces), or all of them when created with an explicit
-- flag, and may be read-only (status and progress, never spawn or cancel). Added in place to
-- databases made before them.
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS service_name text;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS all_workspaces boolean NOT NULL DEFAULT false;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS read_only boolean NOT NULL DEFAULT false;
ALTER TABLE api_tokens ALTER COLUMN user_id DROP NOT NULL;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'api_tokens_one_principal') THEN
        ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_one_principal CHECK (
            (user_id IS NOT NULL AND service_name IS NULL AND NOT all_workspaces AND NOT read_only)
            OR (user_id IS NULL AND service_name IS NOT NULL AND service_name <> ''));
    END IF;
END;
$$;

-- What `token list` shows of a token without its secret: the first characters (the `pxp_`
-- marker and four of the 43 random ones, enough to tell tokens apart and far too few to guess
-- the rest; NULL for tokens made before it), and when a gateway last saw it (written at most
-- once per TOKEN_LAST_USED_INTERVAL, a minute by default).
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS token_prefix text;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS last_used_at timestamptz;

CREATE TABLE IF NOT EXISTS api_token_workspaces (
    token_id     uuid NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, workspace_id)
);

CREATE TABLE IF NOT EXISTS background_tasks (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid        NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    task_type     text        NOT NULL CHECK (task_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    progress_pct  smallint    NOT NULL DEFAULT 0 CHECK (progress_pct BETWEEN 0 AND 100),
    phase         text        NOT NULL DEFAULT 'pending',
    message       text        NOT NULL DEFAULT 'Queued',
    params        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    result_data   jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(result_data) = 'object'),
    error         text,
    started_at    timestamptz,
    completed_at  timestamptz,
    heartbeat_at  timestamptz,
    -- The claim: which runner holds the task, and the token every one of its
    -- writes must match, so a runner that lost the task can never overwrite it.
    runner_id     text,
    claim_token   uuid,
    timeout_s     double precision CHECK (timeout_s > 0),
    version       bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT background_tasks_terminal_has_completed_at
        CHECK ((status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    CONSTRAINT background_tasks_failed_has_error
        CHECK (status <> 'failed' OR coalesce(error, '') <> ''),
    CONSTRAINT background_tasks_running_is_claimed
        CHECK (status <> 'running' OR (claim_token IS NOT NULL AND runner_id IS NOT NULL
                                       AND started_at IS NOT NULL AND timeout_s IS NOT NULL))
);

-- The claim (praxiom_claim_tasks): each workspace's oldest pending tasks, and the workspaces
-- that have any (walked one index probe apiece). It replaces the global oldest-first index.
DROP INDEX IF EXISTS background_tasks_pending_idx;
CREATE INDEX IF NOT EXISTS background_tasks_pending_workspace_idx
    ON background_tasks (workspace_id, created_at) WHERE status = 'pending';
-- The claim's count of what runs in each workspace that has tasks waiting (index only).
CREATE INDEX IF NOT EXISTS background_tasks_running_workspace_idx
    ON background_tasks (workspace_id) WHERE status = 'running';
-- The reaper's stale scan walks the running tasks through the index above: an index on
-- heartbeat_at would make every progress report and heartbeat write index entries (no HOT
-- update), and the scan looks at every running task for its deadline anyway.
DROP INDEX IF EXISTS background_tasks_running_heartbeat_idx;
-- Room on each page for a row's next version, so a progress write stays on its page (HOT).
ALTER TABLE background_tasks SET (fillfactor = 80);
-- The task list (GET /api/tasks, gateway/listing.sql): newest first by (created_at, id), in one
-- workspace or in all of them, each page one backward index scan from its cursor. The first
-- replaces the former (workspace_id, created_at) index, which it covers.
DROP INDEX IF EXISTS background_tasks_workspace_idx;
CREATE INDEX IF NOT EXISTS background_tasks_workspace_list_idx
    ON background_tasks (workspace_id, created_at, id);
CREATE INDEX IF NOT EXISTS background_tasks_list_idx
    ON background_tasks (created_at, id);
-- The same for the tasks still going (`status=pending,running`: what a reloaded page looks
-- for), so that filter walks only them, however many finished tasks a workspace keeps.
CREATE INDEX IF NOT EXISTS background_tasks_active_list_idx
    ON background_tasks (workspace_id, created_at, id) WHERE status IN ('pending', 'running');

-- Who may see a workspace's tasks, in one place for every query that checks it (the
-- gateway's authorize lookup and its streams' re-check): a user through membership, a
-- service token through a grant or its explicit all_workspaces.
CREATE OR REPLACE FUNCTION praxiom_may_see(
    caller_token_id uuid, caller_user_id uuid, caller_all_workspaces boolean, workspace uuid
) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN caller_user_id IS NOT NULL THEN EXISTS (
                    SELECT 1 FROM workspace_members m
                     WHERE m.workspace_id = workspace AND m.user_id = caller_user_id)
                ELSE coalesce(caller_all_workspaces, false) OR EXISTS (
                    SELECT 1 FROM api_token_workspaces g
                     WHERE g.workspace_id = workspace AND g.token_id = caller_token_id)
           END
$$;

-- Every write to a task bumps its version, whoever writes it and however:
-- the version orders SSE events, so no statement may forget to bump it.
-- `changed_xid` (workspace streams, below) moves on every write except one that leaves a
-- running task running (progress, heartbeats): those rows stay where the index has them, so
-- PostgreSQL can update them in place (a HOT update: no index entry written), which a progress
-- report's cost is mostly made of; a catch-up takes every running task anyway.
CREATE OR REPLACE FUNCTION background_tasks_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    IF OLD.status <> 'running' OR NEW.status <> 'running' THEN
        NEW.changed_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER background_tasks_bump_version
    BEFORE UPDATE ON background_tasks
    FOR EACH ROW EXECUTE FUNCTION background_tasks_bump_version();

-- Second round (added in place to databases made before it).
-- Who spawned a task (a user's id, or "service:<name>"), which attempt runs now (0 until the
-- first claim; each claim counts one), how many attempts it may take, and the earliest time a
-- retry may be claimed (NULL: at once).
ALTER TABLE background_tasks ADD COLUMN IF NOT EXISTS spawned_by text;
ALTER TABLE background_tasks ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0
    CHECK (attempt >= 0);
ALTER TABLE background_tasks ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 1
    CHECK (max_attempts >= 1);
ALTER TABLE background_tasks ADD COLUMN IF NOT EXISTS run_after timestamptz;

-- Workspace streams (GET /api/workspaces/{id}/progress). Every task row names the transaction
-- that last wrote it (the insert's default, the version trigger's on every update but those
-- that leave a running task running), so a stream's event id can be a snapshot's xmin: every
-- transaction below it had finished when the stream last read the workspace, so "the tasks
-- changed since event X" are the running ones and those with `changed_xid >= X`, exact even
-- when two writes commit in another order than they started (see gateway/workspace.py). Rows
-- made before this column read 0: changed long ago.
ALTER TABLE background_tasks ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE background_tasks ALTER COLUMN changed_xid SET DEFAULT pg_current_xact_id();
-- A reconnect's catch-up (changed since its event id), and the snapshot on connect (not
-- finished, or finished recently): one index range each.
CREATE INDEX IF NOT EXISTS background_tasks_workspace_changed_idx
    ON background_tasks (workspace_id, changed_xid);
CREATE INDEX IF NOT EXISTS background_tasks_workspace_completed_idx
    ON background_tasks (workspace_id, completed_at);

-- The task-type catalogue, written by the runners (each type they serve, at start and on
-- every heartbeat) and read by the gateways, which never import application code.
CREATE TABLE IF NOT EXISTS task_types (
    name           text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    label          text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    timeout_s      double precision NOT NULL CHECK (timeout_s > 0),
    params_schema  jsonb       NOT NULL DEFAULT '{"type": "object"}',
    max_attempts   integer     NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    last_served_at timestamptz NOT NULL DEFAULT now()
);
-- Where the type came in its runner's registration order: how lists show the types.
ALTER TABLE task_types ADD COLUMN IF NOT EXISTS position integer NOT NULL DEFAULT 0;

-- Access taken away (a token revoked or its expiry moved, a member removed, a service's grant
-- or token deleted) is announced at commit, whoever changes it and however: every gateway
-- LISTENs and re-checks its open streams at once, instead of at the next idle sweep.
CREATE OR REPLACE FUNCTION praxiom_notify_access_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('praxiom_access_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER api_tokens_access_changed
    AFTER UPDATE OF revoked_at, expires_at OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION praxiom_notify_access_changed();
CREATE OR REPLACE TRIGGER workspace_members_access_changed
    AFTER DELETE ON workspace_members
    FOR EACH STATEMENT EXECUTE FUNCTION praxiom_notify_access_changed();
CREATE OR REPLACE TRIGGER api_token_workspaces_access_changed
    AFTER DELETE ON api_token_workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION praxiom_notify_access_changed();

-- The claim, fair across workspaces: up to `claim_limit` due pending tasks of the types in
-- `timeouts` (a retry is due at its run_after), the next one always from the workspace with
-- the fewest tasks running (across all runners, counting this claim's own), oldest first
-- among equals; with `workspace_cap` > 0 no workspace ever gets more running than that.
-- `timeouts` maps each type to its timeout in seconds and `attempts` to its handler's
-- max_attempts. A claimed task is `running` in phase `running` at 0 % until its handler
-- reports, and each claim counts one attempt.
--
-- A function so that one call is one statement and yet its query sees every earlier claim:
-- claims take one transaction-scoped advisory lock first (held for the few milliseconds the
-- claim takes, released at its commit), and in READ COMMITTED each statement of a VOLATILE
-- function takes a fresh snapshot, so the counts are exact, the cap is never overshot, and a
-- claim never picks rows its predecessor just took. SKIP LOCKED still skips the rows other
-- writers (a gateway's cancel) hold at that moment.
CREATE OR REPLACE FUNCTION praxiom_claim_tasks(
    claim_runner_id text, timeouts jsonb, attempts jsonb, claim_limit integer,
    workspace_cap integer
) RETURNS SETOF background_tasks
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- 'prax' 'clai' as integers: the one key every runner's claim serializes on.
    PERFORM pg_advisory_xact_lock(1886544248, 1668047209);
    RETURN QUERY
    WITH RECURSIVE queued (workspace_id) AS (
        (SELECT b.workspace_id FROM background_tasks b
          WHERE b.status = 'pending' ORDER BY b.workspace_id LIMIT 1)
        UNION ALL
        SELECT (SELECT b.workspace_id FROM background_tasks b
                 WHERE b.status = 'pending' AND b.workspace_id > q.workspace_id
                 ORDER BY b.workspace_id LIMIT 1)
          FROM queued q WHERE q.workspace_id IS NOT NULL
    ), running AS (
        -- Counted only in the workspaces with tasks waiting, not for every task running
        -- anywhere: what runs in the other workspaces costs a claim nothing.
        SELECT q.workspace_id,
               (SELECT count(*) FROM background_tasks b
                 WHERE b.workspace_id = q.workspace_id AND b.status = 'running') AS n
          FROM queued q WHERE q.workspace_id IS NOT NULL
    ), ranked AS (
        -- slot: how many would run in the workspace once this task runs.
        SELECT d.id, d.created_at, coalesce(r.n, 0) + d.nth AS slot
          FROM queued q
          LEFT JOIN running r ON r.workspace_id = q.workspace_id
         CROSS JOIN LATERAL (
                SELECT p.id, p.created_at, row_number() OVER (ORDER BY p.created_at) AS nth
                  FROM background_tasks p
                 WHERE p.workspace_id = q.workspace_id AND p.status = 'pending'
                   AND timeouts ? p.task_type
                   AND (p.run_after IS NULL OR p.run_after <= now())
                 ORDER BY p.created_at
                 LIMIT claim_limit) d
         WHERE workspace_cap <= 0 OR coalesce(r.n, 0) + d.nth <= workspace_cap
    )
    UPDATE background_tasks t
       SET status = 'running', phase = 'running', progress_pct = 0, message = 'Started',
           started_at = now(), heartbeat_at = now(), run_after = NULL,
           runner_id = claim_runner_id, claim_token = gen_random_uuid(),
           timeout_s = (timeouts ->> t.task_type)::double precision,
           attempt = t.attempt + 1,
           max_attempts = coalesce((attempts ->> t.task_type)::integer, t.max_attempts)
     WHERE t.id = ANY (ARRAY(
            -- Sorted before the join, so only the rows taken are looked up and locked.
            SELECT b.id
              FROM (SELECT * FROM ranked ORDER BY slot, created_at, id) c
              JOIN background_tasks b ON b.id = c.id
             WHERE b.status = 'pending'
             ORDER BY c.slot, c.created_at, c.id
             LIMIT claim_limit
               FOR UPDATE OF b SKIP LOCKED))
    RETURNING t.*;
END;
$$;

-- report_progress (runner/queries.sql): every report of a batch in one statement, and the
-- progress keys merged into result_data. A function so that each server connection plans it
-- once (PL/pgSQL keeps the plan for the session): parsing and planning the statement cost
-- about as much as running it, and a function's cached plan also works behind PgBouncer in
-- transaction pooling, where a session's PREPARE does not. Rows are locked in id order, as
-- `heartbeat` and `end_tasks` lock them, so the statements can never deadlock each other; a
-- task no longer running under that claim token is left out.
CREATE OR REPLACE FUNCTION praxiom_report_progress(
    task_ids uuid[], claim_tokens uuid[], phases text[], progress_pcts integer[],
    messages text[]
) RETURNS SETOF background_tasks
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    WITH report AS (
        SELECT * FROM unnest(task_ids, claim_tokens, phases, progress_pcts, messages)
            AS r (id, claim_token, phase, progress_pct, message)
    ), locked AS MATERIALIZED (
        SELECT t.id FROM background_tasks t JOIN report r USING (id)
         WHERE t.status = 'running' AND t.claim_token = r.claim_token
         ORDER BY t.id
           FOR UPDATE OF t
    ), written AS (
        UPDATE background_tasks t
           SET phase = r.phase, progress_pct = r.progress_pct, message = r.message,
               result_data = t.result_data || jsonb_build_object(
                   'phase', r.phase, 'progress_pct', r.progress_pct, 'message', r.message),
               heartbeat_at = now()
          FROM report r JOIN locked USING (id)
         WHERE t.id = r.id AND t.status = 'running' AND t.claim_token = r.claim_token
        RETURNING t.*
    )
    SELECT * FROM written;
END;
$$;
