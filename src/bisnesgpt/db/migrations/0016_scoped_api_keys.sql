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
