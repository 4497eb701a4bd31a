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

-- log_event --
-- Record a process event (log_process_event, migration 0001): process, type, data, severity.
SELECT log_process_event($1, $2, $3::jsonb, $4)

-- update_process_health --
-- A heartbeat into process_health (update_process_health, migration 0001): name, status,
-- uptime, memory MB, CPU %, active connections, pid, active bots, messages processed,
-- metadata, last error, host.
SELECT update_process_health($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)

-- insert_metrics --
-- One heartbeat's process_metrics rows, from parallel arrays: names, values, kinds, metadata.
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, metadata)
SELECT $1, name, value, kind, meta::jsonb
FROM unnest($2::text[], $3::float8[], $4::text[], $5::text[]) AS m(name, value, kind, meta)

-- process_rows --
-- Every process_health row with its heartbeat age and the view's verdict (/health/all, status, doctor).
SELECT ph.process_name, ph.role, ph.instance_id, ph.status, ph.pid, ph.host, ph.last_heartbeat,
       ph.started_at, ph.uptime_seconds, ph.memory_usage_mb, ph.cpu_usage_percent, ph.active_bots,
       ph.messages_processed, ph.error_count, ph.last_error, ph.restarts, ph.metadata,
       EXTRACT(EPOCH FROM (now() - ph.last_heartbeat))::float8 AS heartbeat_age,
       v.computed_status AS view_status
FROM process_health ph
JOIN v_process_health_overview v USING (process_name)
ORDER BY ph.role, ph.instance_id, ph.process_name

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
