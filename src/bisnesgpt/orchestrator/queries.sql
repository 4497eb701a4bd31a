-- log_event --
-- Record a process event (log_process_event, migration 0001): process, type, data, severity.
SELECT log_process_event($1, $2, $3::jsonb, $4)

-- mark_exited --
-- A reaped child's row, through claim_process_health (migration 0009): $2 how it ended
-- (crashed, restarting, errored, stopped), $4 its last error (the old one kept when NULL).
-- The row of its pid $3 on this node $5, else the slot's row whose holder is gone (it then
-- shows this generation), else a new row when the slot has none: a living instance's row
-- (a newer child, another orchestrator's) is never overwritten. $6 host, $7 our pid.
SELECT claim_process_health($1, false, $2, nullif($3, 0), NULL, $5, $6, $7, 'orchestrator', NULL, NULL, NULL, $4)

-- end_start_of_pid --
-- The start attempt of a reaped child (name $1, pid $2, node $3) ends: $4 outcome, $5 detail,
-- at $6 (epoch seconds).
UPDATE process_starts SET ended_at = to_timestamp($6), outcome = $4, detail = $5
WHERE process_name = $1 AND pid = $2 AND node_id = $3 AND ended_at IS NULL

-- set_restarts --
-- How often the orchestrator ($5: its pid, on node $6) restarted a slot: written on the
-- slot's newest row unless that row is a living process of another supervisor; the row is
-- created when the slot has none.
WITH newest AS (
    SELECT id FROM process_health WHERE process_name = $1 ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1
), updated AS (
    UPDATE process_health ph SET restarts = $4
    FROM newest
    WHERE ph.id = newest.id
      AND (ph.ppid IS NULL OR (ph.ppid = $5 AND ph.node_id = $6)
           OR process_health_gone(ph.status, ph.pid, ph.last_heartbeat, ph.metadata))
    RETURNING ph.id
)
INSERT INTO process_health (process_name, role, instance_id, restarts)
SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM newest)
