-- Queries on task rows that more than one process runs.
-- Every write returns the whole row, so the caller can publish the payload
-- it just committed without reading it again.

-- get_task --
-- One task row by id.
SELECT * FROM background_tasks WHERE id = %(task_id)s;

-- insert_task --
-- A new pending task; runners are woken by the NOTIFY when it commits. `spawned_by` is the
-- caller's key (a user's id, or "service:<name>"), shown to the handler as task.spawned_by.
WITH task AS (
    INSERT INTO background_tasks (workspace_id, task_type, params, spawned_by)
    VALUES (%(workspace_id)s, %(task_type)s, %(params)s, %(spawned_by)s)
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;

-- cancel_task --
-- A pending or running task becomes cancelled, keeping its last phase and pct;
-- runners hear of it through the NOTIFY and stop its handler.
WITH task AS (
    UPDATE background_tasks
       SET status = 'cancelled', completed_at = now(), message = %(message)s, error = NULL
     WHERE id = %(task_id)s AND status IN ('pending', 'running')
    RETURNING *
)
SELECT task.*, pg_notify(%(notify_channel)s, task.id::text) IS NULL AS notified FROM task;
