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
