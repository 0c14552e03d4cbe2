-- Queries on task rows that more than one process runs.
-- Every write returns the whole row, so the caller can publish the payload
-- it just committed without reading it again.

-- get_task --
-- One task row by id.
SELECT * FROM background_tasks WHERE id = %(task_id)s;

-- insert_task --
-- A new pending task; runners are woken by the NOTIFY when it commits (the NOTIFY carries the
-- task id: all a relay needs). `spawned_by` is the caller's key (a user's id, or
-- "service:<name>"), shown to the handler as task.spawned_by. No row when the workspace does
-- not exist: a missing workspace is told without an error, which would abort the caller's
-- transaction (an application's own, for `praxiom_progress.spawn`).
WITH task AS (
    INSERT INTO background_tasks (workspace_id, task_type, params, spawned_by)
    SELECT w.id, %(task_type)s, %(params)s, %(spawned_by)s
      FROM workspaces w
     WHERE w.id = %(workspace_id)s
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;

-- cancel_task --
-- A pending or running task becomes cancelled, keeping its last phase and pct;
-- runners hear of it through the NOTIFY (sent at commit, carrying the task id) and stop its
-- handler.
WITH task AS (
    UPDATE background_tasks
       SET status = 'cancelled', completed_at = now(), message = %(message)s, error = NULL
     WHERE id = %(task_id)s AND status IN ('pending', 'running')
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;

-- task_types --
-- Every catalogued type, in registration order; `served` when a runner recorded it within
-- the stale window. What a spawn is checked against (taskstate/spawning.py).
SELECT name, label, description, timeout_s, params_schema, max_attempts,
       last_served_at > now() - make_interval(secs => %(stale_after_s)s) AS served
  FROM task_types
 ORDER BY position, name;
