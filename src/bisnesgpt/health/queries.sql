-- cleanup_metrics --
-- Delete process_metrics rows older than 7 days (the function in migration 0001).
SELECT cleanup_old_process_metrics()

-- cleanup_events --
-- Delete process_events older than 30 days, errors kept.
SELECT cleanup_old_process_events()

-- expire_idempotency_keys --
-- Delete up to $1 expired idempotency keys; how many went.
WITH gone AS (
    DELETE FROM idempotency_keys
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1))
    RETURNING 1
)
SELECT count(*) FROM gone

-- seconds_since_maintenance --
-- How long ago the last maintenance pass was recorded (NULL: never).
SELECT EXTRACT(EPOCH FROM (now() - max(timestamp)))::float8
FROM process_events WHERE event_type = 'maintenance'
