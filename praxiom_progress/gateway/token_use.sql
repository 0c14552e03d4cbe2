-- note_token_use --
-- The tokens a gateway saw since its last write. A token written within the interval (by
-- this gateway or another) is left alone: each row changes at most once per interval.
UPDATE api_tokens SET last_used_at = now()
 WHERE id = ANY(%(token_ids)s::uuid[])
   AND (last_used_at IS NULL
        OR last_used_at <= now() - make_interval(secs => %(interval_s)s::double precision))
RETURNING id;
