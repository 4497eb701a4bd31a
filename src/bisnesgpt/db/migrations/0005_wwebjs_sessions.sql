-- 0005_wwebjs_sessions: the WhatsApp-Web engine's own state.
--
-- wwebjs_sessions: per wwebjs phone, what the operator wants (running/stopped), the circuit
-- breaker (tripped sessions are not retried until an operator starts them again) and the
-- driver's session store (encrypted credentials of the paired device; for neonize only the
-- device JID, its keys live in whatsmeow's own schema).
-- wwebjs_session_commands: operator actions from the API (start/stop/restart/logout/pairing
-- code), handled by whichever wwebjs process holds the session's lease.

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
    action        TEXT NOT NULL CHECK (action IN ('start', 'stop', 'restart', 'logout', 'pairing_code')),
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
