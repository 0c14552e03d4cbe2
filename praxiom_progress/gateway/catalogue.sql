-- The task-type catalogue, as the gateway reads it (the runners write it: runner/queries.sql).

-- task_types --
-- Every catalogued type, in registration order; `served` when a runner recorded it within
-- the stale window.
SELECT name, label, description, timeout_s, params_schema, max_attempts,
       last_served_at > now() - make_interval(secs => %(stale_after_s)s) AS served
  FROM task_types
 ORDER BY position, name;

-- unserved_pending --
-- Per type whose pending tasks no live runner serves (not catalogued, or not recorded within
-- the stale window): how many wait, and for how long the oldest has.
SELECT t.task_type, count(*) AS pending,
       extract(epoch FROM now() - min(t.created_at))::double precision AS oldest_pending_s
  FROM background_tasks t
  LEFT JOIN task_types tt ON tt.name = t.task_type
 WHERE t.status = 'pending'
   AND (tt.name IS NULL
        OR tt.last_served_at <= now() - make_interval(secs => %(stale_after_s)s))
 GROUP BY t.task_type
 ORDER BY t.task_type;
