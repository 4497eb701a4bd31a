-- cleanup_metrics --
-- Delete process_metrics rows older than 7 days (the function in migration 0001).
SELECT cleanup_old_process_metrics()

-- cleanup_starts --
-- Delete start attempts that ended (or, never settled — their node is gone — began) more
-- than 30 days ago; how many went.
WITH gone AS (
    DELETE FROM process_starts WHERE coalesce(ended_at, recorded_at) < now() - interval '30 days' RETURNING 1
)
SELECT count(*) FROM gone

-- cleanup_events --
-- Delete process_events older than 30 days, errors kept.
SELECT cleanup_old_process_events()

-- cleanup_audit --
-- Delete audit log entries older than a year; how many went.
WITH gone AS (DELETE FROM audit_log WHERE at < now() - interval '365 days' RETURNING 1)
SELECT count(*) FROM gone

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

-- log_event --
-- Record a process event (log_process_event, migration 0001): process, type, data, severity.
SELECT log_process_event($1, $2, $3::jsonb, $4)

-- record_start --
-- Record a start attempt of this instance ($3, once) and count the earlier attempts of its
-- slot under the same supervisor (node $4, parent pid $6): the slot's restarts.
-- $1 name, $2 role, $5 host, $7 supervisor, $8 start time (epoch seconds).
WITH earlier AS (
    SELECT count(*)::int AS restarts FROM process_starts
    WHERE process_name = $1 AND node_id = $4 AND ppid = $6 AND instance_key <> $3
), added AS (
    INSERT INTO process_starts (process_name, role, instance_key, node_id, host, pid, ppid, supervisor, started_at)
    VALUES ($1, $2, $3, $4, $5, $9, $6, $7, to_timestamp($8))
    ON CONFLICT (instance_key) DO NOTHING
)
SELECT restarts FROM earlier

-- claim_instance --
-- The process_health row of this running instance (claim_process_health, migration 0009):
-- its own, a gone one of its slot taken over, or a new one; its id.
-- $1 name, $2 status, $3 pid, $4 key, $5 node, $6 host, $7 parent pid, $8 supervisor,
-- $9 start time (epoch seconds), $10 restarts, $11 metadata.
SELECT claim_process_health($1, true, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), $10, $11::jsonb, NULL)

-- beat_instance --
-- A heartbeat into this instance's own row ($1: its key): status, uptime, memory MB, CPU %,
-- active bots, messages processed, metadata, the failing checks (NULL when none) and
-- whether it is ready. error_count: +1 on 'error', 0 on 'healthy'.
UPDATE process_health SET
    status = $2, last_heartbeat = now(), uptime_seconds = $3, memory_usage_mb = $4, cpu_usage_percent = $5,
    active_bots = $6, messages_processed = $7, metadata = $8::jsonb, last_error = $9,
    ready_at = CASE WHEN $10 THEN coalesce(ready_at, now()) END,
    error_count = CASE WHEN $2 = 'error' THEN error_count + 1 WHEN $2 = 'healthy' THEN 0 ELSE error_count END,
    updated_at = now()
WHERE instance_key = $1

-- start_ready --
-- The start attempt $1 reached ready.
UPDATE process_starts SET ready_at = coalesce(ready_at, now()) WHERE instance_key = $1

-- end_start --
-- End the start attempt $1 (still open) with an outcome and a detail; its id, or nothing
-- when it had already ended (someone else recorded it).
UPDATE process_starts SET ended_at = now(), outcome = $2, detail = $3
WHERE instance_key = $1 AND ended_at IS NULL
RETURNING id

-- mark_instance_crashed --
-- The row of instance $1 says crashed, with $2 as its last error, unless it already says it
-- ended otherwise (stopped, given up, restarting).
UPDATE process_health SET status = 'crashed', last_error = $2, updated_at = now()
WHERE instance_key = $1 AND status NOT IN ('stopped', 'errored', 'restarting', 'disabled')

-- leave_slot --
-- At a clean stop, delete the row of instance $1 when another instance of its slot lives
-- (that one speaks for the slot: a stopped duplicate must not make it look down).
DELETE FROM process_health mine
WHERE mine.instance_key = $1 AND EXISTS (
    SELECT 1 FROM process_health other
    WHERE other.process_name = mine.process_name AND other.id <> mine.id
      AND NOT process_health_gone(other.status, other.pid, other.last_heartbeat, other.metadata))

-- open_starts_on_node --
-- The start attempts on node $1 that have not ended, but this instance's ($2), with what the
-- process's row last said (NULL once another instance took it over).
SELECT s.instance_key, s.process_name, s.pid, s.ppid, s.supervisor,
       EXTRACT(EPOCH FROM s.started_at)::float8 AS started_at,
       EXTRACT(EPOCH FROM (now() - s.started_at))::float8 AS age, ph.status AS row_status
FROM process_starts s
LEFT JOIN process_health ph ON ph.instance_key = s.instance_key
WHERE s.node_id = $1 AND s.ended_at IS NULL AND s.instance_key <> $2

-- insert_metrics --
-- One heartbeat's process_metrics rows, from parallel arrays: names, values, kinds, metadata.
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, metadata)
SELECT $1, name, value, kind, meta::jsonb
FROM unnest($2::text[], $3::float8[], $4::text[], $5::text[]) AS m(name, value, kind, meta)

-- process_rows --
-- The process_health rows the view shows (what serves, else each slot's newest
-- generation), with their heartbeat age and the view's verdict (/health/all, status, doctor).
SELECT ph.id, ph.process_name, ph.role, ph.instance_id, ph.status, ph.pid, ph.host, ph.last_heartbeat,
       ph.started_at, ph.uptime_seconds, ph.memory_usage_mb, ph.cpu_usage_percent, ph.active_bots,
       ph.messages_processed, ph.error_count, ph.last_error, ph.restarts, ph.metadata, ph.instance_key,
       ph.supervisor, ph.ready_at,
       EXTRACT(EPOCH FROM (now() - ph.last_heartbeat))::float8 AS heartbeat_age,
       v.computed_status AS view_status
FROM process_health ph
JOIN v_process_health_overview v USING (id)
ORDER BY ph.role, ph.instance_id, ph.process_name, ph.started_at

-- mark_roles_disabled --
-- Mark the rows of the roles $1 (switched off by ENABLE_*) disabled.
UPDATE process_health SET status = 'disabled', updated_at = now()
WHERE role = ANY($1::text[]) AND status IS DISTINCT FROM 'disabled'

-- connection_counts --
-- PostgreSQL connections in use, the server's limit, and how many are bisnesgpt's (doctor).
SELECT (SELECT count(*) FROM pg_stat_activity)::int AS used,
       current_setting('max_connections')::int AS max,
       (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bisnesgpt-%')::int AS ours

-- recent_problems --
-- Error and critical process events of the last $1 seconds, newest first (doctor).
SELECT process_name, event_type, severity, timestamp, event_data
FROM process_events
WHERE severity IN ('error', 'critical') AND timestamp > now() - make_interval(secs => $1)
ORDER BY timestamp DESC

-- stuck_messages --
-- Outbound messages queued/sending for over $1 seconds, in flight, and sent in the last $2 seconds (doctor).
SELECT count(*) FILTER (WHERE status IN ('queued', 'sending') AND updated_at < now() - make_interval(secs => $1))
           ::int AS stuck,
       count(*) FILTER (WHERE status IN ('accepted', 'queued', 'sending'))::int AS in_flight,
       count(*) FILTER (WHERE sent_at > now() - make_interval(secs => $2))::int AS sent_recently,
       min(updated_at) FILTER (WHERE status IN ('queued', 'sending')) AS oldest_unsent
FROM messages WHERE direction = 'outbound'
