-- 0009_process_instances: process_health rows per process instance, start attempts, and a
-- view that tells the truth within seconds.
--
-- A process_health row belongs to one process instance, named by instance_key (its node,
-- pid and start time). A new instance takes over the row of its slot (process_name) only
-- when the instance holding it is gone: stopped, crashed, given up, restarting, silent past
-- its MAX_HEARTBEAT_AGE, or a placeholder without a pid (the seeded rows). While the holder
-- lives, another instance of the same name (a second orchestrator, another host) gets a row
-- of its own, and neither overwrites the other. node_id names the pid namespace (boot id
-- and pid namespace of the machine or container), so a process on the same node can judge
-- a row by its pid.
ALTER TABLE process_health DROP CONSTRAINT process_health_pkey;
ALTER TABLE process_health
    ADD COLUMN id BIGSERIAL PRIMARY KEY,
    ADD COLUMN instance_key TEXT UNIQUE,
    ADD COLUMN node_id TEXT,
    ADD COLUMN ppid INTEGER,
    ADD COLUMN supervisor TEXT,
    ADD COLUMN ready_at TIMESTAMPTZ;
CREATE INDEX idx_process_health_name ON process_health(process_name, started_at DESC);

-- Every start of a process, recorded by the process itself as soon as its pool is open:
-- a crash loop leaves one row per attempt (none of them ready), and the restarts of a slot
-- are the attempts made under the same supervisor (same node and parent pid). ended_at and
-- outcome are written by the process when it stops, by its orchestrator when it reaps it,
-- or by any process of the same node that finds its pid gone.
CREATE TABLE process_starts (
    id            BIGSERIAL PRIMARY KEY,
    process_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    instance_key  TEXT NOT NULL UNIQUE,
    host          TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    ppid          INTEGER,
    supervisor    TEXT,
    started_at    TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ready_at      TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    outcome       TEXT CHECK (outcome IN ('stopped', 'crashed', 'restarting', 'errored')),
    detail        TEXT
);
CREATE INDEX idx_process_starts_open ON process_starts(node_id) WHERE ended_at IS NULL;
CREATE INDEX idx_process_starts_slot ON process_starts(process_name, node_id, ppid);
CREATE INDEX idx_process_starts_recorded ON process_starts(recorded_at);

-- The MAX_HEARTBEAT_AGE a row's process declared in its heartbeat metadata (else 60 s).
CREATE FUNCTION process_health_max_age(p_metadata JSONB) RETURNS INTERVAL AS $$
    SELECT make_interval(secs => CASE WHEN p_metadata->>'maxHeartbeatAgeMs' ~ '^[0-9]{1,9}$'
                                      THEN (p_metadata->>'maxHeartbeatAgeMs')::int / 1000.0
                                      ELSE 60 END);
$$ LANGUAGE sql IMMUTABLE;

-- The HEARTBEAT_INTERVAL a row's process declared (NULL: not declared, e.g. the Node server).
CREATE FUNCTION process_health_interval(p_metadata JSONB) RETURNS INTERVAL AS $$
    SELECT CASE WHEN p_metadata->>'heartbeatIntervalMs' ~ '^[0-9]{1,9}$'
                THEN make_interval(secs => (p_metadata->>'heartbeatIntervalMs')::int / 1000.0) END;
$$ LANGUAGE sql IMMUTABLE;

-- Whether the instance holding a row is gone, so that a new instance of the slot may take
-- the row over.
CREATE FUNCTION process_health_gone(p_status TEXT, p_pid INTEGER, p_last_heartbeat TIMESTAMPTZ,
                                    p_metadata JSONB) RETURNS BOOLEAN AS $$
    SELECT p_status IN ('stopped', 'crashed', 'errored', 'restarting', 'disabled', 'unknown')
        OR p_pid IS NULL OR p_last_heartbeat IS NULL
        OR p_last_heartbeat <= now() - process_health_max_age(p_metadata);
$$ LANGUAGE sql STABLE;

-- The row of process_health an instance writes; returns its id (NULL: none to write).
-- Its own row (same instance_key; without a key, the slot's row of that pid on that node);
-- else the newest row of the slot whose holder is gone, taken over with its counters reset
-- (only the current generation is shown); else a new row — for a running instance
-- (p_alive) even beside a living one, for a process that already exited (an orchestrator
-- recording an exit) only when the slot has no row at all.
CREATE FUNCTION claim_process_health(
    p_process_name TEXT,
    p_alive BOOLEAN,
    p_status TEXT,
    p_pid INTEGER,
    p_instance_key TEXT DEFAULT NULL,
    p_node_id TEXT DEFAULT NULL,
    p_host TEXT DEFAULT NULL,
    p_ppid INTEGER DEFAULT NULL,
    p_supervisor TEXT DEFAULT NULL,
    p_started_at TIMESTAMPTZ DEFAULT NULL,
    p_restarts INTEGER DEFAULT NULL,
    p_metadata JSONB DEFAULT NULL,
    p_last_error TEXT DEFAULT NULL
) RETURNS BIGINT AS $$
DECLARE
    v_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('process_health'), hashtext(p_process_name));
    IF p_instance_key IS NOT NULL THEN
        SELECT id INTO v_id FROM process_health WHERE instance_key = p_instance_key;
    ELSIF p_pid IS NOT NULL THEN
        SELECT id INTO v_id FROM process_health
        WHERE process_name = p_process_name AND pid = p_pid
          AND (node_id IS NULL OR node_id IS NOT DISTINCT FROM p_node_id)
        ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1;
    END IF;
    IF v_id IS NOT NULL THEN
        UPDATE process_health
        SET status = p_status, last_error = coalesce(p_last_error, last_error), updated_at = now()
        WHERE id = v_id;
        RETURN v_id;
    END IF;
    SELECT id INTO v_id FROM process_health
    WHERE process_name = p_process_name AND process_health_gone(status, pid, last_heartbeat, metadata)
    ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1;
    IF v_id IS NOT NULL THEN
        UPDATE process_health SET
            instance_key = p_instance_key, node_id = p_node_id, pid = p_pid, host = p_host, ppid = p_ppid,
            supervisor = p_supervisor, status = p_status, started_at = coalesce(p_started_at, now()),
            last_heartbeat = CASE WHEN p_alive THEN now() END, ready_at = NULL, error_count = 0,
            last_error = p_last_error, uptime_seconds = 0, memory_usage_mb = 0, cpu_usage_percent = 0,
            active_connections = 0, active_bots = 0, messages_processed = 0,
            restarts = coalesce(p_restarts, restarts), metadata = coalesce(p_metadata, '{}'::jsonb),
            updated_at = now()
        WHERE id = v_id;
        RETURN v_id;
    END IF;
    IF NOT p_alive AND EXISTS (SELECT 1 FROM process_health WHERE process_name = p_process_name) THEN
        RETURN NULL;
    END IF;
    INSERT INTO process_health (
        process_name, role, instance_id, status, pid, host, last_heartbeat, started_at, last_error,
        restarts, metadata, instance_key, node_id, ppid, supervisor)
    VALUES (
        p_process_name, split_part(p_process_name, '-', 1),
        coalesce(nullif(split_part(p_process_name, '-', 2), '')::INTEGER, 0), p_status, p_pid, p_host,
        CASE WHEN p_alive THEN now() END, coalesce(p_started_at, now()), p_last_error,
        coalesce(p_restarts, 0), coalesce(p_metadata, '{}'::jsonb), p_instance_key, p_node_id, p_ppid,
        p_supervisor)
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$ LANGUAGE plpgsql;

-- The original function, for callers without an instance key (the Node server): it writes
-- the slot's newest row, as before, now that process_name is no longer unique.
CREATE OR REPLACE FUNCTION update_process_health(
    p_process_name TEXT,
    p_status TEXT DEFAULT 'healthy',
    p_uptime_seconds INTEGER DEFAULT 0,
    p_memory_usage_mb INTEGER DEFAULT 0,
    p_cpu_usage_percent NUMERIC DEFAULT 0,
    p_active_connections INTEGER DEFAULT 0,
    p_pid INTEGER DEFAULT NULL,
    p_active_bots INTEGER DEFAULT NULL,
    p_messages_processed BIGINT DEFAULT NULL,
    p_metadata JSONB DEFAULT NULL,
    p_last_error TEXT DEFAULT NULL,
    p_host TEXT DEFAULT NULL
) RETURNS VOID AS $$
DECLARE
    v_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('process_health'), hashtext(p_process_name));
    SELECT id INTO v_id FROM process_health WHERE process_name = p_process_name
    ORDER BY last_heartbeat DESC NULLS LAST, id DESC LIMIT 1;
    IF v_id IS NULL THEN
        INSERT INTO process_health (
            process_name, role, instance_id, status, pid, host, last_heartbeat, started_at,
            error_count, last_error, uptime_seconds, memory_usage_mb, cpu_usage_percent,
            active_connections, active_bots, messages_processed, metadata, updated_at)
        VALUES (
            p_process_name, split_part(p_process_name, '-', 1),
            coalesce(nullif(split_part(p_process_name, '-', 2), '')::INTEGER, 0), p_status, p_pid, p_host,
            now(), now() - make_interval(secs => coalesce(p_uptime_seconds, 0)),
            CASE WHEN p_status = 'error' THEN 1 ELSE 0 END, p_last_error,
            coalesce(p_uptime_seconds, 0), coalesce(p_memory_usage_mb, 0), coalesce(p_cpu_usage_percent, 0),
            coalesce(p_active_connections, 0), coalesce(p_active_bots, 0), coalesce(p_messages_processed, 0),
            coalesce(p_metadata, '{}'::jsonb), now());
        RETURN;
    END IF;
    UPDATE process_health AS ph SET
        status = p_status,
        pid = coalesce(p_pid, ph.pid),
        host = coalesce(p_host, ph.host),
        last_heartbeat = now(),
        started_at = CASE WHEN p_pid IS DISTINCT FROM ph.pid OR ph.started_at IS NULL
                          THEN now() - make_interval(secs => coalesce(p_uptime_seconds, 0))
                          ELSE ph.started_at END,
        uptime_seconds = coalesce(p_uptime_seconds, 0),
        memory_usage_mb = coalesce(p_memory_usage_mb, 0),
        cpu_usage_percent = coalesce(p_cpu_usage_percent, 0),
        active_connections = coalesce(p_active_connections, 0),
        active_bots = coalesce(p_active_bots, ph.active_bots),
        messages_processed = coalesce(p_messages_processed, ph.messages_processed),
        metadata = coalesce(p_metadata, ph.metadata),
        last_error = coalesce(p_last_error, ph.last_error),
        updated_at = now(),
        error_count = CASE
            WHEN p_status = 'error' THEN ph.error_count + 1
            WHEN p_status = 'healthy' THEN 0
            ELSE ph.error_count
        END
    WHERE ph.id = v_id;
END;
$$ LANGUAGE plpgsql;

-- v_process_health_overview, per process instance. computed_status:
--   disabled      the role is switched off (ENABLE_WWEBJS/ENABLE_META=false);
--   down          stopped, crashed, given up or restarting (written by the process, its
--                 orchestrator, or a process of the same node that found its pid gone),
--                 never heartbeated, or silent for its MAX_HEARTBEAT_AGE;
--   unresponsive  silent for two of its HEARTBEAT_INTERVALs (a hung or frozen process);
--   starting      started, not ready yet;
--   degraded      serving but reporting a failing check, a missing optional dependency
--                 (the api without Redis) or draining; for rows without a declared
--                 interval (the Node server) also a heartbeat half MAX_HEARTBEAT_AGE old;
--   healthy.
-- A row that is down is left out when another row of the same name is not down or
-- started later (a stopped duplicate, a previous generation): the view shows what serves.
-- The original columns come first, unchanged; id, host, instance_key, supervisor and ppid
-- are new.
CREATE OR REPLACE VIEW v_process_health_overview AS
WITH judged AS (
    SELECT ph.*,
        CASE
            WHEN ph.status = 'disabled' THEN 'disabled'
            WHEN ph.status IN ('stopped', 'crashed', 'errored', 'restarting') THEN 'down'
            WHEN ph.last_heartbeat IS NULL OR ph.last_heartbeat <= now() - process_health_max_age(ph.metadata)
                THEN 'down'
            WHEN ph.last_heartbeat <= now() - 2 * process_health_interval(ph.metadata) THEN 'unresponsive'
            WHEN ph.status = 'starting' THEN 'starting'
            WHEN process_health_interval(ph.metadata) IS NULL
                 AND ph.last_heartbeat <= now() - process_health_max_age(ph.metadata) / 2 THEN 'degraded'
            WHEN ph.status IN ('error', 'draining', 'degraded') THEN 'degraded'
            ELSE 'healthy'
        END AS computed_status
    FROM process_health ph
)
SELECT
    j.process_name,
    j.role,
    j.instance_id,
    j.status,
    j.pid,
    j.last_heartbeat,
    j.started_at,
    j.uptime_seconds,
    j.memory_usage_mb,
    j.cpu_usage_percent,
    j.active_connections,
    j.messages_processed,
    j.error_count,
    j.last_error,
    j.restarts,
    j.computed_status,
    EXTRACT(EPOCH FROM (now() - j.last_heartbeat)) AS seconds_since_heartbeat,
    (SELECT count(*) FROM phone_configs pc WHERE pc.process_name = j.role) AS active_bots,
    j.id,
    j.host,
    j.instance_key,
    j.supervisor,
    j.ppid
FROM judged j
WHERE j.computed_status <> 'down' OR NOT EXISTS (
    SELECT 1 FROM judged o
    WHERE o.process_name = j.process_name AND o.id <> j.id
      AND (o.computed_status <> 'down'
           OR (coalesce(o.started_at, '-infinity'), o.id) > (coalesce(j.started_at, '-infinity'), j.id)));
