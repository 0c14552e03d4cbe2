-- The task-type catalogue's pending work, as the gateway reports it (the runners write the
-- catalogue: runner/queries.sql; the spawn check reads it: taskstate/queries.sql).

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
