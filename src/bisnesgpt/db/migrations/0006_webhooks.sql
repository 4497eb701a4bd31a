-- 0006_webhooks: tenant webhook endpoints and the durable (event, endpoint) delivery rows.
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
