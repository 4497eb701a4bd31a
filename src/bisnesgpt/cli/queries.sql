-- phone_secrets_after --
-- Key rotation: the next phones (by company and index, after the row key $1) with a stored
-- credential, $2 at most.
SELECT ARRAY[company_id, phone_index::text] AS row_key, meta_access_token_encrypted, api_key_encrypted
FROM phone_configs
WHERE (company_id, phone_index) > (($1::text[])[1], coalesce((($1::text[])[2])::int, -1))
  AND (meta_access_token_encrypted IS NOT NULL OR api_key_encrypted IS NOT NULL)
ORDER BY company_id, phone_index
LIMIT $2

-- reseal_phone_access_token --
-- Key rotation: replace a phone's Meta access token ciphertext ($1 row key) $2 by $3, unless
-- it changed meanwhile (a write since then is already sealed with the current key).
UPDATE phone_configs SET meta_access_token_encrypted = $3
WHERE company_id = ($1::text[])[1] AND phone_index = (($1::text[])[2])::int AND meta_access_token_encrypted = $2

-- reseal_phone_api_key --
-- Key rotation: replace a phone's 360dialog API key ciphertext ($1 row key) $2 by $3 unless it changed.
UPDATE phone_configs SET api_key_encrypted = $3
WHERE company_id = ($1::text[])[1] AND phone_index = (($1::text[])[2])::int AND api_key_encrypted = $2

-- session_secrets_after --
-- Key rotation: the next wwebjs sessions (after the row key $1) with stored credentials, $2 at most.
SELECT ARRAY[company_id, phone_index::text] AS row_key, auth_state
FROM wwebjs_sessions
WHERE (company_id, phone_index) > (($1::text[])[1], coalesce((($1::text[])[2])::int, -1))
  AND auth_state IS NOT NULL
ORDER BY company_id, phone_index
LIMIT $2

-- reseal_session_auth_state --
-- Key rotation: replace a session's credentials ciphertext ($1 row key) $2 by $3 unless it changed.
UPDATE wwebjs_sessions SET auth_state = $3
WHERE company_id = ($1::text[])[1] AND phone_index = (($1::text[])[2])::int AND auth_state = $2

-- endpoint_secrets_after --
-- Key rotation: the next webhook endpoints (by id, after the row key $1), $2 at most (every
-- endpoint has a signing secret).
SELECT ARRAY[id] AS row_key, secret_encrypted, previous_secret_encrypted, headers_encrypted
FROM webhook_endpoints
WHERE id > ($1::text[])[1]
ORDER BY id
LIMIT $2

-- reseal_endpoint_secret --
-- Key rotation: replace an endpoint's signing secret ciphertext ($1 row key) $2 by $3 unless it changed.
UPDATE webhook_endpoints SET secret_encrypted = $3 WHERE id = ($1::text[])[1] AND secret_encrypted = $2

-- reseal_endpoint_previous_secret --
-- Key rotation: replace an endpoint's previous signing secret ciphertext $2 by $3 unless it changed.
UPDATE webhook_endpoints SET previous_secret_encrypted = $3
WHERE id = ($1::text[])[1] AND previous_secret_encrypted = $2

-- reseal_endpoint_headers --
-- Key rotation: replace an endpoint's custom headers ciphertext ($1 row key) $2 by $3 unless it changed.
UPDATE webhook_endpoints SET headers_encrypted = $3 WHERE id = ($1::text[])[1] AND headers_encrypted = $2
