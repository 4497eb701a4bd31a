-- 0012_provider_identity: a provider identity belongs to one phone, and inbound webhooks are
-- routed only when they name exactly one phone.
--
-- A 360dialog channel id, like a Meta phone_number_id, names one WhatsApp number at the
-- provider: two phones claiming it would both receive that number's inbound messages. It
-- becomes unique. Duplicates that exist already are resolved deterministically: the phone
-- that claimed the channel first (the oldest row: created_at, then id) keeps it; the others'
-- dialog360_channel_id is cleared (their API key and the rest stay; an operator sets the right
-- channel again) and a warning process event names each phone that lost its claim.
WITH ranked AS (
    SELECT id, company_id, phone_index, dialog360_channel_id,
           row_number() OVER (PARTITION BY dialog360_channel_id ORDER BY created_at, id) AS claim_rank,
           first_value(company_id) OVER (PARTITION BY dialog360_channel_id ORDER BY created_at, id) AS kept_company,
           first_value(phone_index) OVER (PARTITION BY dialog360_channel_id ORDER BY created_at, id) AS kept_phone
    FROM phone_configs WHERE dialog360_channel_id IS NOT NULL
), cleared AS (
    UPDATE phone_configs pc SET dialog360_channel_id = NULL
    FROM ranked r WHERE pc.id = r.id AND r.claim_rank > 1
    RETURNING r.company_id, r.phone_index, r.dialog360_channel_id, r.kept_company, r.kept_phone
)
SELECT log_process_event('migrate', 'phone.provider_identity.cleared',
                         jsonb_build_object('companyId', company_id, 'phoneIndex', phone_index,
                                            'identity', 'dialog360_channel_id', 'value', dialog360_channel_id,
                                            'keptBy', jsonb_build_object('companyId', kept_company,
                                                                         'phoneIndex', kept_phone),
                                            'action', 'set the phone''s own 360dialog channel id again'),
                         'warning')
FROM cleared;
DROP INDEX idx_phone_configs_channel;
CREATE UNIQUE INDEX idx_phone_configs_dialog360_channel_id ON phone_configs(dialog360_channel_id)
    WHERE dialog360_channel_id IS NOT NULL;

-- A webhook change that names no configured phone, or more than one, is kept aside rather than
-- stored under a guessed company: routing says which (routed: company_id/phone_index are the
-- one phone it named; unmatched: none; ambiguous: several, listed in candidates). Rows kept
-- before this migration without a company (field "….unrouted", or naming no phone) are unmatched.
ALTER TABLE meta_webhook_changes
    ADD COLUMN routing TEXT NOT NULL DEFAULT 'routed' CHECK (routing IN ('routed', 'unmatched', 'ambiguous')),
    ADD COLUMN candidates JSONB;
UPDATE meta_webhook_changes SET routing = 'unmatched' WHERE company_id IS NULL;
CREATE INDEX idx_meta_webhook_changes_unrouted ON meta_webhook_changes(received_at)
    WHERE routing <> 'routed';
