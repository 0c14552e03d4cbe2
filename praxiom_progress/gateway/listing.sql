-- The task list (`GET /api/tasks`): newest first, keyset pagination on (created_at, id).
-- Each query takes the page size plus one (`row_limit`: one more row says a next page exists),
-- the cursor's position (`after_created`, `after_id`: NULL for the first page) and the optional
-- filters (`statuses`, `task_type`: NULL for any). A NULL parameter's test folds to a constant
-- when planned, so what remains is the keyset condition and the filters asked for.

-- list_workspace_tasks --
-- One workspace's tasks: one backward scan of background_tasks_workspace_list_idx, the keyset
-- condition an index condition (no OFFSET: a page costs its own rows, however deep).
SELECT t.*
  FROM background_tasks t
 WHERE t.workspace_id = %(workspace_id)s::uuid
   AND (%(after_created)s::timestamptz IS NULL
        OR (t.created_at, t.id) < (%(after_created)s::timestamptz, %(after_id)s::uuid))
   AND (%(statuses)s::text[] IS NULL OR t.status = ANY (%(statuses)s::text[]))
   AND (%(task_type)s::text IS NULL OR t.task_type = %(task_type)s::text)
 ORDER BY t.created_at DESC, t.id DESC
 LIMIT %(row_limit)s;

-- list_tasks_in_workspaces --
-- The tasks of several workspaces (a user's memberships, a service's grants): the same scan
-- in each workspace, each stopped at a page, then the newest page of them all.
SELECT t.*
  FROM unnest(%(workspace_ids)s::uuid[]) AS w (id)
 CROSS JOIN LATERAL (
       SELECT b.*
         FROM background_tasks b
        WHERE b.workspace_id = w.id
          AND (%(after_created)s::timestamptz IS NULL
               OR (b.created_at, b.id) < (%(after_created)s::timestamptz, %(after_id)s::uuid))
          AND (%(statuses)s::text[] IS NULL OR b.status = ANY (%(statuses)s::text[]))
          AND (%(task_type)s::text IS NULL OR b.task_type = %(task_type)s::text)
        ORDER BY b.created_at DESC, b.id DESC
        LIMIT %(row_limit)s
       ) AS t
 ORDER BY t.created_at DESC, t.id DESC
 LIMIT %(row_limit)s;

-- list_all_tasks --
-- Every workspace's tasks (a service granted all of them): one backward scan of
-- background_tasks_list_idx.
SELECT t.*
  FROM background_tasks t
 WHERE (%(after_created)s::timestamptz IS NULL
        OR (t.created_at, t.id) < (%(after_created)s::timestamptz, %(after_id)s::uuid))
   AND (%(statuses)s::text[] IS NULL OR t.status = ANY (%(statuses)s::text[]))
   AND (%(task_type)s::text IS NULL OR t.task_type = %(task_type)s::text)
 ORDER BY t.created_at DESC, t.id DESC
 LIMIT %(row_limit)s;
