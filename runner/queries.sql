-- The runner's writes. Each is one statement that returns the row it wrote,
-- and each write to a claimed task is guarded by `status = 'running'` and the
-- claim token: a runner that lost its task (cancelled, reaped, re-queued)
-- matches nothing and so can never overwrite what someone else wrote.

-- claim_tasks --
-- Claims up to `limit` of the oldest pending tasks of the types this runner handles;
-- `timeouts` maps each such type to its timeout in seconds.
UPDATE background_tasks t
   SET status = 'running', started_at = now(), heartbeat_at = now(),
       runner_id = %(runner_id)s, claim_token = gen_random_uuid(), message = 'Started',
       timeout_s = (%(timeouts)s::jsonb ->> t.task_type)::double precision
 WHERE t.id = ANY (ARRAY(
        SELECT id FROM background_tasks
         WHERE status = 'pending' AND %(timeouts)s::jsonb ? task_type
         ORDER BY created_at
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED))
RETURNING t.*;

-- report_progress --
-- Writes the progress columns and merges the same three keys into result_data.
UPDATE background_tasks
   SET phase = %(phase)s, progress_pct = %(progress_pct)s, message = %(message)s,
       result_data = result_data || jsonb_build_object(
           'phase', %(phase)s::text,
           'progress_pct', %(progress_pct)s::integer,
           'message', %(message)s::text),
       heartbeat_at = now()
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;

-- complete_task --
-- Every completed task ends on phase `complete` at 100 %, with the handler's result.
UPDATE background_tasks
   SET status = 'completed', phase = 'complete', progress_pct = 100, message = %(message)s,
       result_data = %(result_data)s, error = NULL, completed_at = now(), heartbeat_at = now()
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;

-- fail_task --
-- The owner fails its task (handler error or timeout), keeping the last phase and pct.
UPDATE background_tasks
   SET status = 'failed', error = %(error)s, completed_at = now(), heartbeat_at = now()
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;

-- requeue_task --
-- The owner shuts down: the task goes back to pending, from the start, and runners are woken.
WITH task AS (
    UPDATE background_tasks
       SET status = 'pending', phase = 'pending', progress_pct = 0, message = %(message)s,
           result_data = '{}', started_at = NULL, heartbeat_at = NULL,
           runner_id = NULL, claim_token = NULL, timeout_s = NULL
     WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;

-- heartbeat --
-- Beats for every task this runner holds, in one statement; returns the ones it no
-- longer holds (cancelled, reaped), so their handlers can be stopped.
WITH held AS (
    SELECT * FROM unnest(%(task_ids)s::uuid[], %(claim_tokens)s::uuid[]) AS h (id, claim_token)
), beat AS (
    UPDATE background_tasks t SET heartbeat_at = now()
      FROM held
     WHERE t.id = held.id AND t.claim_token = held.claim_token AND t.status = 'running'
    RETURNING t.id
)
SELECT held.id FROM held WHERE held.id NOT IN (SELECT id FROM beat);

-- find_stale --
-- Running tasks whose runner stopped beating, or that are past their deadline
-- (timeout plus a grace), whoever holds them.
SELECT id, claim_token, task_type, timeout_s, runner_id,
       started_at + make_interval(secs => timeout_s + %(grace_s)s) < now() AS past_deadline
  FROM background_tasks
 WHERE status = 'running'
   AND (heartbeat_at < now() - make_interval(secs => %(stale_after_s)s)
        OR started_at + make_interval(secs => timeout_s + %(grace_s)s) < now())
 ORDER BY heartbeat_at
 LIMIT %(limit)s;

-- reap_task --
-- Fails a stale task on behalf of its lost runner; heartbeat_at keeps the last real beat.
UPDATE background_tasks
   SET status = 'failed', error = %(error)s, completed_at = now()
 WHERE id = %(task_id)s AND status = 'running' AND claim_token = %(claim_token)s
RETURNING *;
