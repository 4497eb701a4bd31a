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
