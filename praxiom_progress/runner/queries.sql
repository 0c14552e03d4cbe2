-- The runner's writes. Each is one statement that returns the row it wrote,
-- and each write to a claimed task is guarded by `status = 'running'` and the
-- claim token: a runner that lost its task (cancelled, reaped, re-queued)
-- matches nothing and so can never overwrite what someone else wrote.

-- claim_tasks --
-- Claims up to `limit` due pending tasks of the types this runner handles, fairly across
-- workspaces: the next from the workspace with the fewest tasks running, oldest first among
-- equals, none past `workspace_cap` running in one workspace (0: no cap). `timeouts` maps each
-- such type to its timeout in seconds and `max_attempts` to its handler's attempts. The
-- statement is schema.sql's `praxiom_claim_tasks` (a retry is due at its `run_after`; a
-- claimed task is `running` in phase `running` at 0 %; each claim counts one attempt): a
-- function, so that the one statement can serialize on an advisory lock and still see the
-- claims before it.
SELECT * FROM praxiom_claim_tasks(%(runner_id)s, %(timeouts)s::jsonb, %(max_attempts)s::jsonb,
                                  %(limit)s, %(workspace_cap)s);

-- report_progress --
-- Writes the progress of every task in the batch (one statement however many tasks report
-- together) and merges the same three keys into result_data: schema.sql's
-- `praxiom_report_progress` (a function, so the server plans it once per connection).
SELECT id, status, task_type, progress_pct, phase, message, started_at, completed_at,
       heartbeat_at, error, result_data, version, workspace_id
  FROM praxiom_report_progress(%(task_ids)s::uuid[], %(claim_tokens)s::uuid[],
                               %(phases)s::text[], %(progress_pcts)s::integer[],
                               %(messages)s::text[]);

-- end_tasks --
-- Every end in the batch in one statement (runner.ends): a completed task ends on phase
-- `complete` at 100 %, with the handler's message and result; a failed one keeps its last
-- phase, pct and message and gets its error. Rows are locked in id order, as `heartbeat` and
-- `report_progress` lock them, so the statements can never deadlock each other.
WITH ends AS (
    SELECT * FROM unnest(%(task_ids)s::uuid[], %(claim_tokens)s::uuid[],
                         %(completed)s::boolean[], %(messages)s::text[], %(results)s::text[],
                         %(errors)s::text[])
        AS e (id, claim_token, completed, message, result_data, error)
), locked AS MATERIALIZED (
    SELECT t.id FROM background_tasks t JOIN ends e USING (id)
     WHERE t.status = 'running' AND t.claim_token = e.claim_token
     ORDER BY t.id
       FOR UPDATE OF t
)
UPDATE background_tasks t
   SET status = CASE WHEN e.completed THEN 'completed' ELSE 'failed' END,
       phase = CASE WHEN e.completed THEN 'complete' ELSE t.phase END,
       progress_pct = CASE WHEN e.completed THEN 100 ELSE t.progress_pct END,
       message = CASE WHEN e.completed THEN e.message ELSE t.message END,
       result_data = CASE WHEN e.completed THEN e.result_data::jsonb ELSE t.result_data END,
       error = CASE WHEN e.completed THEN NULL ELSE e.error END,
       completed_at = now(), heartbeat_at = now()
  FROM ends e JOIN locked USING (id)
 WHERE t.id = e.id AND t.status = 'running' AND t.claim_token = e.claim_token
RETURNING t.*;

-- requeue_task --
-- The owner shuts down: the task goes back to pending, from the start, and runners are woken.
-- The attempt it was on does not count: it did not fail.
WITH task AS (
    UPDATE background_tasks
       SET status = 'pending', phase = 'pending', progress_pct = 0, message = %(message)s,
           result_data = '{}', started_at = NULL, heartbeat_at = NULL,
           runner_id = NULL, claim_token = NULL, timeout_s = NULL,
           attempt = greatest(attempt - 1, 0)
     WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;

-- retry_task --
-- The handler failed with attempts left: back to pending in phase `retrying`, from the start,
-- the claim let go; no runner claims it before `run_after` (the runner that let it go wakes
-- for it then, so no NOTIFY: nobody could claim it now).
UPDATE background_tasks
   SET status = 'pending', phase = 'retrying', progress_pct = 0, message = %(message)s,
       result_data = '{}', error = NULL, started_at = NULL, heartbeat_at = NULL,
       runner_id = NULL, claim_token = NULL, timeout_s = NULL,
       run_after = now() + make_interval(secs => %(delay_s)s)
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;

-- heartbeat --
-- Beats for every task this runner holds, in one statement; returns the ones it no
-- longer holds (cancelled, reaped), so their handlers can be stopped. Rows are locked
-- in id order, as `report_progress` locks them.
WITH held AS (
    SELECT * FROM unnest(%(task_ids)s::uuid[], %(claim_tokens)s::uuid[]) AS h (id, claim_token)
), locked AS MATERIALIZED (
    SELECT t.id FROM background_tasks t JOIN held USING (id)
     WHERE t.claim_token = held.claim_token AND t.status = 'running'
     ORDER BY t.id
       FOR UPDATE OF t
), beat AS (
    UPDATE background_tasks t SET heartbeat_at = now()
      FROM locked
     WHERE t.id = locked.id
    RETURNING t.id
)
SELECT held.id FROM held WHERE held.id NOT IN (SELECT id FROM beat);

-- find_stale --
-- Running tasks whose runner stopped beating, or that are past their deadline
-- (timeout plus a grace), whoever holds them; with the type's catalogued label (NULL when
-- it is not catalogued), for a type the reaping runner does not serve itself.
SELECT t.id, t.claim_token, t.task_type, t.timeout_s, t.runner_id,
       t.started_at + make_interval(secs => t.timeout_s + %(grace_s)s) < now() AS past_deadline,
       tt.label
  FROM background_tasks t
  LEFT JOIN task_types tt ON tt.name = t.task_type
 WHERE t.status = 'running'
   AND (t.heartbeat_at < now() - make_interval(secs => %(stale_after_s)s)
        OR t.started_at + make_interval(secs => t.timeout_s + %(grace_s)s) < now())
 ORDER BY t.heartbeat_at
 LIMIT %(limit)s;

-- reap_task --
-- Fails a stale task on behalf of its lost runner; heartbeat_at keeps the last real beat.
UPDATE background_tasks
   SET status = 'failed', error = %(error)s, completed_at = now()
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;

-- record_task_types --
-- The catalogue: every type this runner serves (`types`, a JSON array of entries), with
-- last_served_at = now() and its place in the runner's registration order; the newest
-- writer's label, timeout and schema win.
INSERT INTO task_types AS tt
       (name, label, description, timeout_s, params_schema, max_attempts, position,
        last_served_at)
SELECT e.name, e.label, e.description, e.timeout_s, e.params_schema, e.max_attempts,
       e.n - 1, now()
  FROM ROWS FROM (jsonb_to_recordset(%(types)s::jsonb)
                  AS (name text, label text, description text, timeout_s double precision,
                      params_schema jsonb, max_attempts integer)) WITH ORDINALITY
       AS e (name, label, description, timeout_s, params_schema, max_attempts, n)
 ORDER BY e.name
    ON CONFLICT (name) DO UPDATE
   SET label = EXCLUDED.label, description = EXCLUDED.description,
       timeout_s = EXCLUDED.timeout_s, params_schema = EXCLUDED.params_schema,
       max_attempts = EXCLUDED.max_attempts, position = EXCLUDED.position,
       last_served_at = EXCLUDED.last_served_at;
