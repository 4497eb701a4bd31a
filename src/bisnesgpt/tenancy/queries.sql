-- insert_company --
-- A new company (tenant), active.
INSERT INTO companies (id, name) VALUES ($1, $2) RETURNING id, name, status, created_at

-- list_companies --
-- Every company, by id.
SELECT id, name, status, created_at FROM companies ORDER BY id

-- get_company --
-- One company by id.
SELECT id, name, status, created_at FROM companies WHERE id = $1

-- insert_api_key --
-- A new API key ($4 its shown prefix, $5 the SHA-256 of the key; the key itself is never stored;
-- $6 scopes, $7 phone indexes, NULL: all; $8 when it expires, NULL: never).
INSERT INTO api_keys (company_id, role, name, key_prefix, key_hash, scopes, phone_indexes, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at, scopes, phone_indexes,
       expires_at

-- find_key_by_hash --
-- The key with this SHA-256, and its company's status (NULL for an operator key).
SELECT k.id, k.company_id, k.role, k.name, k.key_prefix, k.created_at, k.last_used_at, k.revoked_at,
       k.scopes, k.phone_indexes, k.expires_at, c.status AS company_status
FROM api_keys k LEFT JOIN companies c ON c.id = k.company_id
WHERE k.key_hash = $1

-- list_api_keys --
-- Every key (revoked ones too), or one company's ($1 NULL: all), by id.
SELECT id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at, scopes, phone_indexes,
       expires_at
FROM api_keys
WHERE ($1::text IS NULL OR company_id = $1) ORDER BY id

-- revoke_api_key --
-- Revoke a key that is still active; answers its id when it was.
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id

-- touch_api_key --
-- Record that a key was used, at most once a minute (the check against concurrent writers).
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')

-- get_send_quota --
-- A company's send quotas (NULL: none).
SELECT send_quota_per_minute, send_quota_per_day FROM companies WHERE id = $1

-- set_send_quota --
-- Set a company's send quotas ($2 per minute, $3 per day; NULL removes one).
UPDATE companies SET send_quota_per_minute = $2, send_quota_per_day = $3 WHERE id = $1
RETURNING send_quota_per_minute, send_quota_per_day

-- live_key_ids --
-- Of the key ids $1, those still valid: not revoked and, for a company key, its company active.
SELECT k.id FROM api_keys k LEFT JOIN companies c ON c.id = k.company_id
WHERE k.id = ANY($1::bigint[]) AND k.revoked_at IS NULL AND (k.role = 'admin' OR c.status = 'active')

-- set_company_status --
-- Enable or disable a company ($2 'active' | 'disabled'); a disabled company's keys are refused.
UPDATE companies SET status = $2 WHERE id = $1 RETURNING id, name, status, created_at

-- get_api_key --
-- One key (revoked ones too) by id.
SELECT id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at, scopes, phone_indexes,
       expires_at
FROM api_keys WHERE id = $1

-- set_api_key_limits --
-- Replace a key's scopes ($2), phone indexes ($3; NULL: all) and expiry ($4; NULL: never), unless
-- it is revoked; answers the key when it changed.
UPDATE api_keys SET scopes = $2, phone_indexes = $3, expires_at = $4
WHERE id = $1 AND revoked_at IS NULL
RETURNING id, company_id, role, name, key_prefix, created_at, last_used_at, revoked_at, scopes, phone_indexes,
          expires_at
