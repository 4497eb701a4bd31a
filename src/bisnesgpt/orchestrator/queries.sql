-- log_event --
-- Record a process event (log_process_event, migration 0001): process, type, data, severity.
SELECT log_process_event($1, $2, $3::jsonb, $4)

-- mark_exited --
-- A reaped child's row: 'crashed' / 'errored' — unless a newer child of the slot already
-- heartbeated (its heartbeat is later than this exit, $7), which must not be overwritten.
INSERT INTO process_health AS ph (process_name, role, instance_id, status, pid, last_error, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (process_name) DO UPDATE SET
    status = EXCLUDED.status,
    last_error = coalesce(EXCLUDED.last_error, ph.last_error),
    updated_at = now()
WHERE ph.pid IS NULL OR ph.pid = $5 OR ph.last_heartbeat IS NULL OR ph.last_heartbeat < to_timestamp($7)

-- set_restarts --
-- How often the orchestrator restarted a slot (creating its row if it never heartbeated).
INSERT INTO process_health AS ph (process_name, role, instance_id, restarts)
VALUES ($1, $2, $3, $4)
ON CONFLICT (process_name) DO UPDATE SET restarts = EXCLUDED.restarts
