-- schema.sql: the full current schema in one file, for reading (and for the test that
-- a fresh migrate yields exactly this). Every new migration must be reflected here.


-- ==========================================================================================
-- Shared helpers
-- ==========================================================================================

CREATE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- ==========================================================================================
-- Tenancy
-- ==========================================================================================

CREATE TABLE companies (
    id          TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Send quotas (NULL: none); counted in Redis.
    send_quota_per_minute INTEGER CHECK (send_quota_per_minute > 0),
    send_quota_per_day    INTEGER CHECK (send_quota_per_day > 0)
);
CREATE TRIGGER trigger_companies_updated_at BEFORE UPDATE ON companies
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- API keys are stored as SHA-256 of the key; the key itself is shown once at creation.
-- company_id NULL with role 'admin' is an operator key (all companies).
CREATE TABLE api_keys (
    id            BIGSERIAL PRIMARY KEY,
    company_id    TEXT REFERENCES companies(id) ON DELETE CASCADE,
    role          TEXT NOT NULL DEFAULT 'company' CHECK (role IN ('company', 'admin')),
    name          TEXT NOT NULL DEFAULT '',
    key_prefix    TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    CHECK ((role = 'admin' AND company_id IS NULL) OR (role = 'company' AND company_id IS NOT NULL))
);
CREATE INDEX idx_api_keys_company ON api_keys(company_id);

-- ==========================================================================================
-- Phones
-- ==========================================================================================

CREATE TABLE phone_configs (
    id                           BIGSERIAL PRIMARY KEY,
    company_id                   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index                  INTEGER NOT NULL DEFAULT 0 CHECK (phone_index >= 0),
    connection_type              TEXT DEFAULT 'wwebjs',
    dialog360_client_id          TEXT,
    dialog360_channel_id         TEXT,
    api_key_encrypted            TEXT,
    display_phone_number         TEXT,
    status                       TEXT DEFAULT 'pending',
    meta_phone_number_id         TEXT,
    meta_waba_id                 TEXT,
    meta_access_token_encrypted  TEXT,
    process_name                 TEXT,
    -- Per-phone knobs (e.g. messages_per_second, coexistence) without a migration each.
    settings                     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (company_id, phone_index)
);
CREATE INDEX idx_phone_configs_company ON phone_configs(company_id);
-- A 360dialog channel names one number too: one phone, one owner (0012).
CREATE UNIQUE INDEX idx_phone_configs_dialog360_channel_id ON phone_configs(dialog360_channel_id)
    WHERE dialog360_channel_id IS NOT NULL;
CREATE INDEX idx_phone_configs_connection_type ON phone_configs(connection_type, company_id);
CREATE INDEX idx_phone_configs_process ON phone_configs(process_name, status)
    WHERE process_name IS NOT NULL;
-- Meta webhooks name the phone by its phone_number_id; one phone, one owner.
CREATE UNIQUE INDEX idx_phone_configs_meta_phone_number_id ON phone_configs(meta_phone_number_id)
    WHERE meta_phone_number_id IS NOT NULL;

CREATE FUNCTION update_process_name_on_connection_type() RETURNS trigger AS $$
BEGIN
    IF NEW.connection_type = 'wwebjs' OR NEW.connection_type IS NULL THEN
        NEW.process_name := 'wwebjs';
    ELSIF NEW.connection_type IN ('meta_direct', 'meta_embedded', '360dialog') THEN
        NEW.process_name := 'meta';
    ELSE
        NEW.process_name := NULL;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trigger_set_process_name
    BEFORE INSERT OR UPDATE OF connection_type ON phone_configs
    FOR EACH ROW EXECUTE FUNCTION update_process_name_on_connection_type();
CREATE TRIGGER trigger_phone_configs_updated_at BEFORE UPDATE ON phone_configs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE phone_status (
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index      INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (
                         'initializing', 'qr', 'pairing_code', 'authenticated', 'ready',
                         'error', 'disconnected', 'pending', 'paused')),
    phone_number     TEXT,
    last_seen        TIMESTAMPTZ,
    metadata         JSONB NOT NULL DEFAULT '{}'::jsonb,
    connection_type  TEXT DEFAULT 'wwebjs',
    process_name     TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index)
);
CREATE INDEX idx_phone_status_process ON phone_status(process_name, status)
    WHERE process_name IS NOT NULL;
CREATE TRIGGER trigger_phone_status_updated_at BEFORE UPDATE ON phone_status
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- ==========================================================================================
-- Messages
-- ==========================================================================================

-- The forward-only state machine, in one place, used by every status UPDATE:
-- accepted -> queued -> sending -> sent -> delivered -> read, or failed / cancelled.
-- Steps may be skipped (sent -> read); nothing moves backwards; failed and cancelled end it.
CREATE FUNCTION message_status_rank(p_status TEXT) RETURNS INTEGER AS $$
    SELECT CASE p_status
        WHEN 'accepted' THEN 0
        WHEN 'queued' THEN 1
        WHEN 'sending' THEN 2
        WHEN 'sent' THEN 3
        WHEN 'delivered' THEN 4
        WHEN 'read' THEN 5
    END;
$$ LANGUAGE sql IMMUTABLE;

CREATE FUNCTION message_status_allows(p_from TEXT, p_to TEXT) RETURNS BOOLEAN AS $$
    SELECT CASE
        WHEN p_from IN ('failed', 'cancelled', 'read') THEN false
        WHEN p_to = 'cancelled' THEN p_from IN ('accepted', 'queued')
        WHEN p_to = 'failed' THEN p_from IN ('accepted', 'queued', 'sending', 'sent')
        ELSE coalesce(message_status_rank(p_to) > message_status_rank(p_from), false)
    END;
$$ LANGUAGE sql IMMUTABLE;

CREATE TABLE messages (
    id                 BIGSERIAL PRIMARY KEY,
    message_id         TEXT NOT NULL,
    company_id         TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index        INTEGER NOT NULL DEFAULT 0,
    direction          TEXT NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound', 'inbound')),
    provider           TEXT NOT NULL DEFAULT 'wwebjs',
    connection_type    TEXT,
    chat_id            TEXT NOT NULL,
    message_type       TEXT NOT NULL,
    content            TEXT,
    media_url          TEXT,
    media_id           TEXT,
    media_mime_type    TEXT,
    media_filename     TEXT,
    -- The Cloud-API-shaped body the engine sends (outbound) or the parsed message (inbound).
    payload            JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- The provider's raw payload (inbound messages, original Node jobs).
    raw                JSONB,
    status             TEXT NOT NULL DEFAULT 'accepted' CHECK (status IN (
                           'accepted', 'queued', 'sending', 'sent', 'delivered', 'read',
                           'failed', 'cancelled')),
    external_id        TEXT,
    context_message_id TEXT,
    error_code         TEXT,
    error_title        TEXT,
    error_details      JSONB,
    attempts           INTEGER NOT NULL DEFAULT 0,
    idempotency_key    TEXT,
    queue_name         TEXT,
    process_name       TEXT,
    source             TEXT NOT NULL DEFAULT 'api',
    deadline_at        TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    queued_at          TIMESTAMPTZ,
    sent_at            TIMESTAMPTZ,
    delivered_at       TIMESTAMPTZ,
    read_at            TIMESTAMPTZ,
    failed_at          TIMESTAMPTZ,
    -- Its place among its chat's ordered messages (NULL: sent without per-chat order).
    chat_seq           BIGINT,
    -- The id the message has where it came from: a Node-format job's BullMQ job id.
    external_ref       TEXT,
    -- Meta's billing data: the latest `pricing` and `conversation` blocks of its statuses.
    pricing            JSONB,
    conversation       JSONB,
    -- The provider's time of an inbound message (when the contact sent it).
    provider_timestamp TIMESTAMPTZ,
    -- Media: the stored object (media_objects.id) and how far an inbound download got.
    media_object_id    TEXT,
    media_state        TEXT CHECK (media_state IN ('pending', 'stored', 'failed', 'expired')),
    media_error        TEXT,
    UNIQUE (message_id, company_id)
);
CREATE INDEX idx_messages_external_id ON messages(external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX idx_messages_idempotency_key ON messages(company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Meta redelivers inbound webhooks: one row per inbound provider message.
CREATE UNIQUE INDEX idx_messages_inbound_external_id ON messages(company_id, phone_index, external_id)
    WHERE direction = 'inbound' AND external_id IS NOT NULL;
-- A Node-format job's id is unique within its queue only (Node BullMQ counts per queue).
CREATE UNIQUE INDEX idx_messages_external_ref ON messages(queue_name, external_ref)
    WHERE external_ref IS NOT NULL;
CREATE INDEX idx_messages_company_sent ON messages(company_id, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX idx_messages_company_chat ON messages(company_id, chat_id, created_at DESC);
CREATE INDEX idx_messages_company_created ON messages(company_id, created_at DESC);
-- The outbox reconciler scans only unfinished outbound rows.
CREATE INDEX idx_messages_outbox ON messages(updated_at)
    WHERE status IN ('accepted', 'queued', 'sending') AND direction = 'outbound';
CREATE TRIGGER trigger_messages_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE INDEX idx_messages_media_object ON messages(media_object_id) WHERE media_object_id IS NOT NULL;

-- A file a company has (received or uploaded); its bytes are in the media store under
-- (company, sha256), shared by every object with the same bytes.
CREATE TABLE media_objects (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    mime_type   TEXT NOT NULL,
    filename    TEXT,
    origin      TEXT NOT NULL CHECK (origin IN ('inbound', 'upload')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ
);
CREATE INDEX idx_media_objects_blob ON media_objects(company_id, sha256);
CREATE INDEX idx_media_objects_expires ON media_objects(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE message_status_history (
    id           BIGSERIAL PRIMARY KEY,
    message_pk   BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    source       TEXT NOT NULL,
    detail       JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- false: a provider status received that did not move the state (kept all the same).
    applied      BOOLEAN NOT NULL DEFAULT true,
    -- The provider's own time for the status (Meta's timestamp, a WhatsApp-Web receipt's).
    provider_at  TIMESTAMPTZ
);
CREATE INDEX idx_message_status_history_message ON message_status_history(message_pk, id);

-- Idempotency-Key replay store: same key + same body -> the stored response.
CREATE TABLE idempotency_keys (
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    key              TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash     TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'in_flight' CHECK (state IN ('in_flight', 'completed')),
    response_status  INTEGER,
    response_body    JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL DEFAULT now() + INTERVAL '24 hours',
    PRIMARY KEY (company_id, key)
);
CREATE INDEX idx_idempotency_keys_expires ON idempotency_keys(expires_at);

-- The Meta 24-hour customer-service window, per (company, phone, contact).
CREATE TABLE conversation_sessions (
    company_id        TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index       INTEGER NOT NULL DEFAULT 0,
    contact           TEXT NOT NULL,
    last_inbound_at   TIMESTAMPTZ,
    last_outbound_at  TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, contact)
);
CREATE TRIGGER trigger_conversation_sessions_updated_at BEFORE UPDATE ON conversation_sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Canonical tenant events (message.inbound, message.status, session.status, phone.status),
-- written in the same transaction as the change that caused them; webhook delivery fans
-- them out to tenant endpoints.
CREATE TABLE tenant_events (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index  INTEGER,
    type         TEXT NOT NULL,
    data         JSONB NOT NULL,
    raw          JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_tenant_events_company_created ON tenant_events(company_id, created_at);
CREATE INDEX idx_tenant_events_created ON tenant_events(created_at);

-- ==========================================================================================
-- Coordination: named leases (outbox reconciler, cleanup scheduler, session ownership)
-- ==========================================================================================

CREATE TABLE process_leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    acquired_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);

-- ==========================================================================================
-- Process health, metrics and events
-- ==========================================================================================

-- One row per process instance: instance 0 of a role is named after the role ('api'),
-- further instances '<role>-<n>' ('api-1'). The original seeds 'api', 'wwebjs', 'meta'.
CREATE TABLE process_health (
    process_name        TEXT PRIMARY KEY,
    role                TEXT NOT NULL,
    instance_id         INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL DEFAULT 'unknown',
    pid                 INTEGER,
    host                TEXT,
    last_heartbeat      TIMESTAMPTZ,
    started_at          TIMESTAMPTZ,
    error_count         INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    uptime_seconds      INTEGER NOT NULL DEFAULT 0,
    memory_usage_mb     INTEGER NOT NULL DEFAULT 0,
    cpu_usage_percent   NUMERIC(6, 2) NOT NULL DEFAULT 0,
    active_connections  INTEGER NOT NULL DEFAULT 0,
    active_bots         INTEGER NOT NULL DEFAULT 0,
    messages_processed  BIGINT NOT NULL DEFAULT 0,
    restarts            INTEGER NOT NULL DEFAULT 0,
    metadata            JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_process_health_status ON process_health(status, last_heartbeat);
CREATE INDEX idx_process_health_role ON process_health(role, instance_id);

CREATE TABLE process_metrics (
    id            BIGSERIAL PRIMARY KEY,
    process_name  TEXT NOT NULL,
    metric_name   TEXT NOT NULL,
    metric_value  DOUBLE PRECISION NOT NULL,
    metric_type   TEXT NOT NULL DEFAULT 'gauge' CHECK (metric_type IN ('counter', 'gauge', 'histogram')),
    timestamp     TIMESTAMPTZ NOT NULL DEFAULT now(),
    metadata      JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX idx_process_metrics_name_time ON process_metrics(process_name, metric_name, timestamp DESC);
CREATE INDEX idx_process_metrics_timestamp ON process_metrics(timestamp DESC);

CREATE TABLE process_events (
    id            BIGSERIAL PRIMARY KEY,
    process_name  TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    event_data    JSONB NOT NULL DEFAULT '{}'::jsonb,
    severity      TEXT NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    timestamp     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_process_events_name_time ON process_events(process_name, timestamp DESC);
CREATE INDEX idx_process_events_severity ON process_events(severity, timestamp DESC)
    WHERE severity IN ('error', 'critical');

CREATE FUNCTION log_process_event(
    p_process_name TEXT,
    p_event_type TEXT,
    p_event_data JSONB DEFAULT '{}'::jsonb,
    p_severity TEXT DEFAULT 'info'
) RETURNS BIGINT AS $$
    INSERT INTO process_events (process_name, event_type, event_data, severity)
    VALUES (p_process_name, p_event_type, coalesce(p_event_data, '{}'::jsonb), coalesce(p_severity, 'info'))
    RETURNING id;
$$ LANGUAGE sql;

CREATE FUNCTION record_process_metric(
    p_process_name TEXT,
    p_metric_name TEXT,
    p_metric_value DOUBLE PRECISION,
    p_metric_type TEXT DEFAULT 'gauge',
    p_metadata JSONB DEFAULT '{}'::jsonb
) RETURNS BIGINT AS $$
    INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, metadata)
    VALUES (p_process_name, p_metric_name, p_metric_value, coalesce(p_metric_type, 'gauge'),
            coalesce(p_metadata, '{}'::jsonb))
    RETURNING id;
$$ LANGUAGE sql;

-- The original's six leading parameters keep their order (Node callers keep working);
-- the rest are optional. error_count: +1 on 'error', reset to 0 on 'healthy'.
CREATE FUNCTION update_process_health(
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
    v_role TEXT := split_part(p_process_name, '-', 1);
    v_instance INTEGER := coalesce(nullif(split_part(p_process_name, '-', 2), '')::INTEGER, 0);
BEGIN
    INSERT INTO process_health AS ph (
        process_name, role, instance_id, status, pid, host, last_heartbeat, started_at,
        error_count, last_error, uptime_seconds, memory_usage_mb, cpu_usage_percent,
        active_connections, active_bots, messages_processed, metadata, updated_at)
    VALUES (
        p_process_name, v_role, v_instance, p_status, p_pid, p_host, now(),
        now() - make_interval(secs => coalesce(p_uptime_seconds, 0)),
        CASE WHEN p_status = 'error' THEN 1 ELSE 0 END, p_last_error,
        coalesce(p_uptime_seconds, 0), coalesce(p_memory_usage_mb, 0), coalesce(p_cpu_usage_percent, 0),
        coalesce(p_active_connections, 0), coalesce(p_active_bots, 0), coalesce(p_messages_processed, 0),
        coalesce(p_metadata, '{}'::jsonb), now())
    ON CONFLICT (process_name) DO UPDATE SET
        status = EXCLUDED.status,
        pid = coalesce(p_pid, ph.pid),
        host = coalesce(p_host, ph.host),
        last_heartbeat = EXCLUDED.last_heartbeat,
        started_at = CASE WHEN p_pid IS DISTINCT FROM ph.pid OR ph.started_at IS NULL
                          THEN EXCLUDED.started_at ELSE ph.started_at END,
        uptime_seconds = EXCLUDED.uptime_seconds,
        memory_usage_mb = EXCLUDED.memory_usage_mb,
        cpu_usage_percent = EXCLUDED.cpu_usage_percent,
        active_connections = EXCLUDED.active_connections,
        active_bots = coalesce(p_active_bots, ph.active_bots),
        messages_processed = coalesce(p_messages_processed, ph.messages_processed),
        metadata = coalesce(p_metadata, ph.metadata),
        last_error = coalesce(p_last_error, ph.last_error),
        updated_at = EXCLUDED.updated_at,
        error_count = CASE
            WHEN EXCLUDED.status = 'error' THEN ph.error_count + 1
            WHEN EXCLUDED.status = 'healthy' THEN 0
            ELSE ph.error_count
        END;
END;
$$ LANGUAGE plpgsql;

CREATE VIEW v_process_health_overview AS
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
        WHEN ph.last_heartbeat > now() - INTERVAL '30 seconds' THEN 'healthy'
        WHEN ph.last_heartbeat > now() - INTERVAL '60 seconds' THEN 'degraded'
        ELSE 'down'
    END AS computed_status,
    EXTRACT(EPOCH FROM (now() - ph.last_heartbeat)) AS seconds_since_heartbeat,
    (SELECT count(*) FROM phone_configs pc WHERE pc.process_name = ph.role) AS active_bots
FROM process_health ph;

INSERT INTO process_health (process_name, role, instance_id, status) VALUES
    ('api', 'api', 0, 'unknown'),
    ('wwebjs', 'wwebjs', 0, 'unknown'),
    ('meta', 'meta', 0, 'unknown');

CREATE FUNCTION cleanup_old_process_metrics() RETURNS INTEGER AS $$
DECLARE
    deleted_count INTEGER;
BEGIN
    DELETE FROM process_metrics WHERE timestamp < now() - INTERVAL '7 days';
    GET DIAGNOSTICS deleted_count = ROW_COUNT;
    RETURN deleted_count;
END;
$$ LANGUAGE plpgsql;

-- Keeps error and critical events forever; everything else for 30 days.
CREATE FUNCTION cleanup_old_process_events() RETURNS INTEGER AS $$
DECLARE
    deleted_count INTEGER;
BEGIN
    DELETE FROM process_events
    WHERE timestamp < now() - INTERVAL '30 days'
      AND severity NOT IN ('error', 'critical');
    GET DIAGNOSTICS deleted_count = ROW_COUNT;
    RETURN deleted_count;
END;
$$ LANGUAGE plpgsql;

-- ==== from 0003_process_health_status.sql ====
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

-- ==== from 0004_meta_webhook_changes.sql ====

-- Cloud API webhook changes that are neither inbound messages nor statuses
-- (account_update, template and group updates, fields added by Meta later): kept as
-- received so nothing Meta tells us is lost, deduplicated because Meta redelivers.
CREATE TABLE meta_webhook_changes (
    id               BIGSERIAL PRIMARY KEY,
    provider         TEXT NOT NULL,
    company_id       TEXT REFERENCES companies(id) ON DELETE CASCADE,  -- NULL: phone not configured here
    phone_index      INTEGER,
    waba_id          TEXT,
    phone_number_id  TEXT,
    field            TEXT NOT NULL,
    value            JSONB NOT NULL,
    value_hash       TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 0012: routed (to company_id/phone_index), or kept aside: unmatched (no phone), ambiguous
    -- (several phones, listed in candidates).
    routing          TEXT NOT NULL DEFAULT 'routed' CHECK (routing IN ('routed', 'unmatched', 'ambiguous')),
    candidates       JSONB,
    UNIQUE (provider, value_hash)
);
CREATE INDEX idx_meta_webhook_changes_company ON meta_webhook_changes(company_id, received_at);
CREATE INDEX idx_meta_webhook_changes_field ON meta_webhook_changes(field, received_at);
CREATE INDEX idx_meta_webhook_changes_unrouted ON meta_webhook_changes(received_at)
    WHERE routing <> 'routed';

-- ==== from 0005_wwebjs_sessions.sql ====
-- 0005_wwebjs_sessions: the WhatsApp-Web engine's own state.
--
-- wwebjs_sessions: per wwebjs phone, what the operator wants (running/stopped), the circuit
-- breaker (tripped sessions are not retried until an operator starts them again) and the
-- driver's session store (encrypted credentials of the paired device; for neonize only the
-- device JID, its keys live in whatsmeow's own schema).
-- wwebjs_session_commands: operator actions from the API (start/stop/restart/logout/pairing
-- code, and group operations since 0017), handled by whichever wwebjs process holds the
-- session's lease.

CREATE TABLE wwebjs_sessions (
    company_id          TEXT NOT NULL,
    phone_index         INTEGER NOT NULL,
    desired_state       TEXT NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    driver              TEXT,
    auth_state          TEXT,
    device_id           TEXT,
    phone_number        TEXT,
    breaker_tripped_at  TIMESTAMPTZ,
    breaker_reason      TEXT,
    last_ready_at       TIMESTAMPTZ,
    stopped_reason      TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
CREATE TRIGGER trigger_wwebjs_sessions_updated_at BEFORE UPDATE ON wwebjs_sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE wwebjs_session_commands (
    id            BIGSERIAL PRIMARY KEY,
    company_id    TEXT NOT NULL,
    phone_index   INTEGER NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('start', 'stop', 'restart', 'logout', 'pairing_code', 'group',
                                                  'chat')),
    args          JSONB NOT NULL DEFAULT '{}'::jsonb,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result        JSONB,
    requested_by  TEXT NOT NULL DEFAULT 'api',
    handled_by    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    handled_at    TIMESTAMPTZ,
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
CREATE INDEX idx_wwebjs_session_commands_pending ON wwebjs_session_commands(company_id, phone_index, id)
    WHERE state = 'pending';

-- ==== from 0006_webhooks.sql ====
-- Delivery rows are written by record_tenant_event in the same transaction as the event
-- (the outbox); delivery workers claim them with row locks, so any number of processes
-- can deliver without sending an event twice to the same endpoint.

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,
    company_id                  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL DEFAULT '',
    -- Event types this endpoint receives; empty = every type.
    event_types                 TEXT[] NOT NULL DEFAULT '{}',
    enabled                     BOOLEAN NOT NULL DEFAULT true,
    -- Add the provider's original payload as data.raw.
    include_raw                 BOOLEAN NOT NULL DEFAULT false,
    -- Custom request headers (JSON object), AES-256-GCM encrypted like every secret at rest.
    headers_encrypted           TEXT,
    secret_encrypted            TEXT NOT NULL,
    -- After a rotation the previous secret keeps signing (a second v1=) until it expires.
    previous_secret_encrypted   TEXT,
    previous_secret_expires_at  TIMESTAMPTZ,
    -- Failure streak (reset by a success) and the automatic disabling it can lead to.
    consecutive_failures        INTEGER NOT NULL DEFAULT 0,
    failing_since               TIMESTAMPTZ,
    last_success_at             TIMESTAMPTZ,
    last_failure_at             TIMESTAMPTZ,
    disabled_at                 TIMESTAMPTZ,
    disabled_reason             TEXT,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_webhook_endpoints_company ON webhook_endpoints(company_id, created_at);
CREATE TRIGGER trigger_webhook_endpoints_updated_at BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row per (event, endpoint) delivery; a replay or a manual retry of a finished row
-- re-opens it or adds another row for the same event (same event id on the wire).
CREATE TABLE webhook_deliveries (
    id                     BIGSERIAL PRIMARY KEY,
    endpoint_id            TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id               TEXT NOT NULL REFERENCES tenant_events(id) ON DELETE CASCADE,
    company_id             TEXT NOT NULL,
    origin                 TEXT NOT NULL DEFAULT 'event' CHECK (origin IN ('event', 'replay')),
    status                 TEXT NOT NULL DEFAULT 'pending' CHECK (status IN (
                               'pending', 'retrying', 'delivered', 'dead')),
    attempts               INTEGER NOT NULL DEFAULT 0,
    next_attempt_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Retries stop (dead letter) once this much time has passed since the window started.
    window_started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An attempt in flight: the worker holding it, until when (then anyone may take it).
    locked_by              TEXT,
    locked_until           TIMESTAMPTZ,
    last_attempt_at        TIMESTAMPTZ,
    last_attempt_by        TEXT,
    last_status_code       INTEGER,
    last_error             TEXT,
    last_response_excerpt  TEXT,
    delivered_at           TIMESTAMPTZ,
    dead_at                TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Claiming: the due rows of one endpoint, oldest first.
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'retrying');
-- The worker's "when is the next row due" and the lag metric.
CREATE INDEX idx_webhook_deliveries_next ON webhook_deliveries(next_attempt_at)
    WHERE status IN ('pending', 'retrying');
-- Attempts in flight per endpoint (the concurrency bound); tiny: claims are short-lived.
CREATE INDEX idx_webhook_deliveries_in_flight ON webhook_deliveries(endpoint_id)
    WHERE locked_until IS NOT NULL;
-- GET /api/v1/webhooks/{id}/deliveries, newest first.
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id DESC);
CREATE INDEX idx_webhook_deliveries_event ON webhook_deliveries(event_id);
-- Retention cleanup of finished rows.
CREATE INDEX idx_webhook_deliveries_finished ON webhook_deliveries(updated_at)
    WHERE status IN ('delivered', 'dead');
CREATE TRIGGER trigger_webhook_deliveries_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Wake the delivery workers (LISTEN bisnesgpt_webhook_deliveries) when rows are inserted;
-- the notification is sent at commit, so a worker never looks before the rows exist.
CREATE FUNCTION notify_webhook_deliveries() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted_deliveries) THEN
        PERFORM pg_notify('bisnesgpt_webhook_deliveries', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trigger_webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS inserted_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_deliveries();

-- ==== from 0007_dashboard.sql ====
-- 0007_dashboard: what the operator dashboard reads often, made cheap.
--
-- The dashboard's metrics rollup counts, once a minute, the outbound messages sent and
-- failed in the last complete minute(s) (sent by engine, failures by error code,
-- accept->sent latency) and stores them in process_metrics; its charts read
-- process_metrics by metric name over the last hour or day.
CREATE INDEX idx_messages_sent_at ON messages(sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX idx_messages_failed_at ON messages(failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX idx_process_metrics_metric_time ON process_metrics(metric_name, timestamp DESC);
-- Failures an operator re-queued keep their error in the re-queue's history row (source
-- 'operator'); the rollup finds those rows by time.
CREATE INDEX idx_message_status_history_operator ON message_status_history(created_at)
    WHERE source = 'operator';

-- ==== from 0009_process_instances.sql ====
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

-- 0010_chat_order: messages to one chat leave in the order they were accepted.
--
-- Each ordered outbound message gets the next number of its chat (company, phone, chat) in
-- the transaction that accepts it: the chat's chat_sequences row is upserted and stays
-- locked until that transaction commits, so numbers follow commit order whichever API
-- instance accepts. A message may be claimed for sending only when no message of its chat
-- with a lower number is still unfinished (accepted, queued, sending); chat_seq NULL is a
-- message sent without order (`"ordered": false`, the phone's ordered_sends off, Node jobs).
CREATE TABLE chat_sequences (
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index  INTEGER NOT NULL,
    chat_id      TEXT NOT NULL,
    last_seq     BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, chat_id)
);
-- A chat's unfinished ordered messages by number: its head, and what holds a message back.
CREATE INDEX idx_messages_chat_order ON messages(company_id, phone_index, chat_id, chat_seq)
    WHERE chat_seq IS NOT NULL AND direction = 'outbound' AND status IN ('accepted', 'queued', 'sending');
-- Whether a phone's messages keep per-chat order unless a message says otherwise.
ALTER TABLE phone_configs ADD COLUMN ordered_sends BOOLEAN NOT NULL DEFAULT true;

-- ==== from 0016_scoped_api_keys.sql ====
-- 0016_scoped_api_keys: what a company API key may do, on which of its company's phones, until when.
--
-- scopes NULL: every scope (keys made before scopes existed keep their full company scope);
-- phone_indexes NULL: every phone of the company; expires_at NULL: the key does not expire.
-- Operator keys reach everything: they may expire, but take no scopes or phone limit.
ALTER TABLE api_keys ADD COLUMN scopes TEXT[];
ALTER TABLE api_keys ADD COLUMN phone_indexes INTEGER[];
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_known CHECK (
    scopes IS NULL OR (cardinality(scopes) > 0
                       AND scopes <@ ARRAY['messages:send', 'messages:read', 'sessions:manage', 'webhooks:manage']));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_phone_indexes_given CHECK (
    phone_indexes IS NULL OR cardinality(phone_indexes) > 0);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_limits_company_only CHECK (
    role = 'company' OR (scopes IS NULL AND phone_indexes IS NULL));

-- 0017_wwebjs_groups: notifications already turned into tenant events (WhatsApp redelivers
-- one until it is confirmed; each becomes one event), and each voter's current poll choice.
CREATE TABLE wwebjs_notifications (
    company_id       TEXT NOT NULL,
    phone_index      INTEGER NOT NULL,
    notification_id  TEXT NOT NULL,
    chat_id          TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, notification_id),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);

CREATE TABLE wwebjs_poll_votes (
    company_id   TEXT NOT NULL,
    phone_index  INTEGER NOT NULL,
    poll_id      TEXT NOT NULL,
    voter        TEXT NOT NULL,
    selected     JSONB NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, poll_id, voter),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
-- When the number was paired (a new pairing after a logout starts again): its warm-up day.
ALTER TABLE wwebjs_sessions ADD COLUMN paired_at TIMESTAMPTZ;

-- ==== from 0018_wwebjs_members.sql ====
-- 0018_wwebjs_members: the wwebjs processes that share the sessions, and what each can take.
--
-- Every wwebjs process keeps its row alive on each reconcile tick (expires_at, like a lease)
-- with its capacity (WWEBJS_MAX_SESSIONS, NULL for no limit) and how many sessions it drives;
-- a draining process (SIGTERM, rolling restart) says so and takes no new ones. From the live
-- rows every process computes the same fair share per process, so a new or unowned session
-- goes to a process below its share and a process above it hands sessions over a few at a time.
CREATE TABLE wwebjs_members (
    holder        TEXT PRIMARY KEY,
    process_name  TEXT NOT NULL,
    host          TEXT NOT NULL,
    capacity      INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    sessions      INTEGER NOT NULL DEFAULT 0,
    draining      BOOLEAN NOT NULL DEFAULT false,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);

-- ==== from 0019_audit_log.sql ====
-- 0019_audit_log: every change made through the API or the dashboard, by whom, from where.
--
-- One row per mutating request (POST/PUT/PATCH/DELETE) of an authenticated caller, written
-- after the answer: who (an operator or a company, and the key; NULL key for the operator
-- key of the settings or a dashboard session), the client address (as the HTTP edge judged
-- it), the route and the path, the company the path names, and the status answered. Sends
-- of messages are their own record (the messages table) and are not repeated here.
CREATE TABLE audit_log (
    id                 BIGSERIAL PRIMARY KEY,
    at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_kind         TEXT NOT NULL CHECK (actor_kind IN ('admin', 'company')),
    actor_company_id   TEXT,
    key_id             BIGINT,
    via                TEXT NOT NULL CHECK (via IN ('api', 'dashboard')),
    client_address     TEXT,
    method             TEXT NOT NULL,
    route              TEXT NOT NULL,
    path               TEXT NOT NULL,
    target_company_id  TEXT,
    status             INTEGER NOT NULL
);
CREATE INDEX idx_audit_log_actor_company ON audit_log(actor_company_id, id DESC);
CREATE INDEX idx_audit_log_target_company ON audit_log(target_company_id, id DESC);
CREATE INDEX idx_audit_log_at ON audit_log(at);

-- ==== from 0020_wwebjs_antiban_settings.sql ====
-- 0020_wwebjs_antiban_settings: the anti-ban controls per phone, with company defaults.
--
-- One row per company (phone_index NULL: the company's defaults) and per phone that sets any
-- control; a NULL column inherits (phone, then company, then the WWEBJS_* setting). A phone's
-- row goes with the phone (ON DELETE CASCADE); the company's with the company.
CREATE TABLE wwebjs_antiban_settings (
    company_id          TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index         INTEGER CHECK (phone_index IS NULL OR phone_index >= 0),
    simulate_typing     BOOLEAN,
    send_jitter_ms      INTEGER CHECK (send_jitter_ms >= 0),
    daily_message_cap   INTEGER CHECK (daily_message_cap >= 0),
    daily_new_chat_cap  INTEGER CHECK (daily_new_chat_cap >= 0),
    daily_cap_action    TEXT CHECK (daily_cap_action IN ('wait', 'fail')),
    warmup_days         INTEGER CHECK (warmup_days >= 0),
    check_on_whatsapp   BOOLEAN,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
CREATE UNIQUE INDEX idx_wwebjs_antiban_settings_scope
    ON wwebjs_antiban_settings(company_id, COALESCE(phone_index, -1));

-- ==== from 0021_contact_lids.sql ====
-- 0021_contact_lids: which phone number a WhatsApp LID stands for, and chat commands.
--
-- WhatsApp names more and more senders by a LID (``<digits>@lid``, a per-account privacy id)
-- instead of their number. Whenever the protocol reveals both for a contact (a LID sender
-- with the number as its alternative, a group participant with both), the pair is kept per
-- phone, so every later message and event from that LID can carry the number too, and a
-- number can be found from its LID. ``number`` stays NULL for a LID whose number was never
-- revealed; it is filled in (once) when it is. Chat operations a WhatsApp-Web session carries
-- out for the API (read receipts, presence, on-WhatsApp checks) are session commands of the
-- action ``chat``, like group operations.
CREATE TABLE contact_lids (
    company_id   TEXT NOT NULL,
    phone_index  INTEGER NOT NULL,
    lid          TEXT NOT NULL CHECK (lid LIKE '%@lid'),
    number       TEXT CHECK (number ~ '^[0-9]{5,20}$'),
    first_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    learned_at   TIMESTAMPTZ,
    PRIMARY KEY (company_id, phone_index, lid),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
CREATE INDEX idx_contact_lids_number ON contact_lids(company_id, phone_index, number) WHERE number IS NOT NULL;

-- ==== from 0023_lease_epochs.sql ====
-- 0023_lease_epochs: every tenure of a lease gets its own number (a fencing token).
--
-- A lease's epoch is drawn from one sequence whenever a holder takes the lease (a new row, or
-- a takeover of an expired one) and kept while the same holder renews it; a release and a
-- new take draw a new one. A holder writes what the lease protects (a wwebjs session's status
-- and credentials) only in a transaction that first finds its own holder and epoch still on
-- the row (and keeps the row locked until commit), so an owner that was frozen or cut off past
-- its lease cannot write over its successor's work, even with a stale view of its own lease.
CREATE SEQUENCE process_lease_epochs;
ALTER TABLE process_leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT nextval('process_lease_epochs');

-- ==== from 0024_accept_outbound.sql ====
-- 0024_accept_outbound: accepting a message in one statement (one round trip, its own transaction).
--
-- accept_outbound() does, in one statement, what the accept transaction did in seven: the
-- 24-hour window check (Cloud API phones; p_window_contact NULL skips it), the
-- Idempotency-Key claim, the chat's next chat_seq (p_ordered; its chat_sequences row stays
-- locked until the statement commits, so numbers follow commit order), the queued message
-- row, its first history row, its `message.status` tenant event (its webhook deliveries: the
-- tenant_events trigger of 0025),
-- the key's stored 202 answer (p_key_answer NULL: the key stays in_flight, as with ?wait=),
-- and whether the new message is its chat's head. Called outside any transaction, the
-- statement is the transaction: nothing is committed unless all of it is.
--
-- Outcomes: 'stored' (message is the new row); 'window_closed' (nothing written;
-- last_inbound says when the contact last wrote, NULL: never); 'key_taken' (nothing
-- written: the key is another request's or has an answer; the caller takes the slow path,
-- which replays it or answers 409/422). A message that already exists under the key (a
-- request that died after storing it with ?wait=) raises the unique violation, as the
-- INSERT did.
CREATE FUNCTION accept_outbound(
    p_message_id TEXT, p_company_id TEXT, p_phone_index INTEGER, p_provider TEXT, p_connection_type TEXT,
    p_chat_id TEXT, p_message_type TEXT, p_content TEXT, p_media_url TEXT, p_media_id TEXT,
    p_media_mime_type TEXT, p_media_filename TEXT, p_payload JSONB, p_raw JSONB, p_context_message_id TEXT,
    p_idempotency_key TEXT, p_queue_name TEXT, p_process_name TEXT, p_source TEXT, p_deadline_at TIMESTAMPTZ,
    p_ordered BOOLEAN, p_window_contact TEXT,
    p_key_request_hash TEXT, p_key_method TEXT, p_key_path TEXT, p_key_ttl INTERVAL, p_key_stale INTERVAL,
    p_key_answer JSONB, p_event_id TEXT, p_event_data JSONB,
    OUT outcome TEXT, OUT last_inbound TIMESTAMPTZ, OUT is_head BOOLEAN, OUT message messages
) AS $$
DECLARE
    v_seq BIGINT;
    v_head BIGINT;
BEGIN
    is_head := TRUE;
    IF p_window_contact IS NOT NULL THEN
        SELECT s.last_inbound_at INTO last_inbound FROM conversation_sessions s
        WHERE s.company_id = p_company_id AND s.phone_index = p_phone_index AND s.contact = p_window_contact;
        IF last_inbound IS NULL OR now() - last_inbound > INTERVAL '24 hours' THEN
            outcome := 'window_closed';
            RETURN;
        END IF;
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys AS k (company_id, key, request_hash, method, path, state, expires_at)
        VALUES (p_company_id, p_idempotency_key, p_key_request_hash, p_key_method, p_key_path, 'in_flight',
                now() + p_key_ttl)
        ON CONFLICT (company_id, key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash, method = EXCLUDED.method, path = EXCLUDED.path,
            state = 'in_flight', response_status = NULL, response_body = NULL,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE k.expires_at < now()
           OR (k.state = 'in_flight' AND k.created_at < now() - p_key_stale
               AND k.request_hash = EXCLUDED.request_hash);
        IF NOT FOUND THEN
            outcome := 'key_taken';
            RETURN;
        END IF;
    END IF;
    IF p_ordered THEN
        INSERT INTO chat_sequences AS c (company_id, phone_index, chat_id, last_seq)
        VALUES (p_company_id, p_phone_index, p_chat_id, 1)
        ON CONFLICT (company_id, phone_index, chat_id) DO UPDATE SET last_seq = c.last_seq + 1, updated_at = now()
        RETURNING last_seq INTO v_seq;
    END IF;
    INSERT INTO messages (
        message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
        message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
        status, context_message_id, idempotency_key, queue_name, process_name, source, deadline_at,
        queued_at, chat_seq)
    VALUES (p_message_id, p_company_id, p_phone_index, 'outbound', p_provider, p_connection_type, p_chat_id,
            p_message_type, p_content, p_media_url, p_media_id, p_media_mime_type, p_media_filename, p_payload,
            p_raw, 'queued', p_context_message_id, p_idempotency_key, p_queue_name, p_process_name, p_source,
            p_deadline_at, now(), v_seq)
    RETURNING * INTO message;
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    VALUES (message.id, NULL, 'queued', p_source, jsonb_build_object('queue', p_queue_name));
    INSERT INTO tenant_events (id, company_id, phone_index, type, data)
    VALUES (p_event_id, p_company_id, p_phone_index, 'message.status', p_event_data);
    IF p_idempotency_key IS NOT NULL AND p_key_answer IS NOT NULL THEN
        UPDATE idempotency_keys SET state = 'completed', response_status = 202, response_body = p_key_answer
        WHERE company_id = p_company_id AND key = p_idempotency_key;
    END IF;
    IF v_seq IS NOT NULL THEN
        SELECT m.id INTO v_head FROM messages m
        WHERE m.company_id = p_company_id AND m.phone_index = p_phone_index AND m.chat_id = p_chat_id
          AND m.chat_seq IS NOT NULL AND m.direction = 'outbound' AND m.status IN ('accepted', 'queued', 'sending')
        ORDER BY m.chat_seq
        LIMIT 1;
        is_head := v_head IS NULL OR v_head = message.id;
    END IF;
    outcome := 'stored';
END;
$$ LANGUAGE plpgsql;

-- ==== from 0025_tenant_event_deliveries.sql ====
-- 0025_tenant_event_deliveries: a tenant event's webhook deliveries are written in one place.
--
-- Every writer of tenant_events (record_tenant_event, advance_status, the batched `sent`
-- record, accept_outbound) wrote the same delivery rows itself: one per enabled endpoint of
-- the event's company whose event filter matches (empty: every type). A statement trigger
-- now writes them for whatever a statement inserted, in that statement, so they still commit
-- (or roll back) with the event; the writers only insert the event.
CREATE FUNCTION insert_tenant_event_deliveries() RETURNS trigger AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, company_id)
    SELECT e.id, ev.id, ev.company_id
    FROM inserted_events ev JOIN webhook_endpoints e ON e.company_id = ev.company_id
    WHERE e.enabled AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trigger_tenant_events_deliveries AFTER INSERT ON tenant_events
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT EXECUTE FUNCTION insert_tenant_event_deliveries();

