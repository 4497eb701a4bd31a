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
    UNIQUE (provider, value_hash)
);
CREATE INDEX idx_meta_webhook_changes_company ON meta_webhook_changes(company_id, received_at);
CREATE INDEX idx_meta_webhook_changes_field ON meta_webhook_changes(field, received_at);
