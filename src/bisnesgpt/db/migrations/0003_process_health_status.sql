-- v_process_health_overview also listens to what is known about a process, not only to
-- how old its last heartbeat is: a process that stopped, crashed or was given up (written
-- by the process itself or by the orchestrator that reaped it) is 'down' at once instead
-- of 60 s later; one reporting failing checks or draining is 'degraded'; a role switched
-- off (ENABLE_WWEBJS/ENABLE_META=false) is 'disabled'. The heartbeat thresholds are half
-- and all of the MAX_HEARTBEAT_AGE each process reports in its heartbeat metadata
-- (maxHeartbeatAgeMs), so the view and GET /health/all judge alike; without it (rows
-- written by the Node server) the original 30 s / 60 s. Columns are unchanged.
CREATE OR REPLACE VIEW v_process_health_overview AS
SELECT
    ph.process_name,
    ph.role,
    ph.instance_id,
    ph.status,
    ph.pid,
    ph.last_heartbeat,
    ph.started_at,
    ph.uptime_seconds,
    ph.memory_usage_mb,
    ph.cpu_usage_percent,
    ph.active_connections,
    ph.messages_processed,
    ph.error_count,
    ph.last_error,
    ph.restarts,
    CASE
        WHEN ph.status = 'disabled' THEN 'disabled'
        WHEN ph.status IN ('stopped', 'crashed', 'errored') THEN 'down'
        WHEN ph.last_heartbeat > now() - lim.max_age / 2 AND ph.status IN ('error', 'draining') THEN 'degraded'
        WHEN ph.last_heartbeat > now() - lim.max_age / 2 THEN 'healthy'
        WHEN ph.last_heartbeat > now() - lim.max_age THEN 'degraded'
        ELSE 'down'
    END AS computed_status,
    EXTRACT(EPOCH FROM (now() - ph.last_heartbeat)) AS seconds_since_heartbeat,
    (SELECT count(*) FROM phone_configs pc WHERE pc.process_name = ph.role) AS active_bots
FROM process_health ph
CROSS JOIN LATERAL (
    SELECT make_interval(secs => CASE WHEN ph.metadata->>'maxHeartbeatAgeMs' ~ '^[0-9]{1,9}$'
                                      THEN (ph.metadata->>'maxHeartbeatAgeMs')::int / 1000.0
                                      ELSE 60 END) AS max_age
) lim;
