-- get_phone --
-- One phone's configuration by (company, phone index).
SELECT * FROM phone_configs WHERE company_id = $1 AND phone_index = $2

-- company_phones --
-- A company's phone configurations, by phone index.
SELECT * FROM phone_configs WHERE company_id = $1 ORDER BY phone_index

-- phone_by_meta_phone_number_id --
-- The phone a Cloud API phone_number_id belongs to (unique).
SELECT * FROM phone_configs WHERE meta_phone_number_id = $1

-- phone_by_d360_channel --
-- The phone of a 360dialog channel.
SELECT * FROM phone_configs WHERE dialog360_channel_id = $1

-- all_phones --
-- Every phone of every company, or only those of the connection types $1 (NULL: all types).
SELECT * FROM phone_configs
WHERE ($1::text[] IS NULL OR connection_type = ANY($1::text[]))
ORDER BY company_id, phone_index

-- upsert_phone --
-- Create or change a phone: only the columns named in $4 (a JSON object) change; connection_type
-- ($3) and status ($5) always do.
INSERT INTO phone_configs AS pc (
    company_id, phone_index, connection_type, status, display_phone_number, meta_phone_number_id,
    meta_waba_id, meta_access_token_encrypted, dialog360_client_id, dialog360_channel_id, api_key_encrypted,
    ordered_sends)
VALUES ($1, $2, $3, $5, $4::jsonb->>'display_phone_number', $4::jsonb->>'meta_phone_number_id',
        $4::jsonb->>'meta_waba_id', $4::jsonb->>'meta_access_token_encrypted', $4::jsonb->>'dialog360_client_id',
        $4::jsonb->>'dialog360_channel_id', $4::jsonb->>'api_key_encrypted',
        coalesce(($4::jsonb->>'ordered_sends')::boolean, true))
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    connection_type = EXCLUDED.connection_type,
    status = EXCLUDED.status,
    display_phone_number = CASE WHEN $4::jsonb ? 'display_phone_number' THEN EXCLUDED.display_phone_number
                                ELSE pc.display_phone_number END,
    meta_phone_number_id = CASE WHEN $4::jsonb ? 'meta_phone_number_id' THEN EXCLUDED.meta_phone_number_id
                                ELSE pc.meta_phone_number_id END,
    meta_waba_id = CASE WHEN $4::jsonb ? 'meta_waba_id' THEN EXCLUDED.meta_waba_id ELSE pc.meta_waba_id END,
    meta_access_token_encrypted = CASE WHEN $4::jsonb ? 'meta_access_token_encrypted'
                                       THEN EXCLUDED.meta_access_token_encrypted
                                       ELSE pc.meta_access_token_encrypted END,
    dialog360_client_id = CASE WHEN $4::jsonb ? 'dialog360_client_id' THEN EXCLUDED.dialog360_client_id
                               ELSE pc.dialog360_client_id END,
    dialog360_channel_id = CASE WHEN $4::jsonb ? 'dialog360_channel_id' THEN EXCLUDED.dialog360_channel_id
                                ELSE pc.dialog360_channel_id END,
    api_key_encrypted = CASE WHEN $4::jsonb ? 'api_key_encrypted' THEN EXCLUDED.api_key_encrypted
                             ELSE pc.api_key_encrypted END,
    ordered_sends = CASE WHEN $4::jsonb ? 'ordered_sends' THEN EXCLUDED.ordered_sends ELSE pc.ordered_sends END
RETURNING *

-- delete_phone --
-- Remove a phone's configuration; answers its id when there was one.
DELETE FROM phone_configs WHERE company_id = $1 AND phone_index = $2 RETURNING id

-- delete_phone_status --
-- Remove a phone's live status row.
DELETE FROM phone_status WHERE company_id = $1 AND phone_index = $2

-- upsert_phone_status --
-- Set a phone's live status and metadata ($5); a NULL phone number, connection type or process
-- name keeps the one recorded.
INSERT INTO phone_status (company_id, phone_index, status, phone_number, last_seen, metadata,
                          connection_type, process_name)
VALUES ($1, $2, $3, $4, now(), $5::jsonb, $6, $7)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    status = EXCLUDED.status,
    phone_number = coalesce(EXCLUDED.phone_number, phone_status.phone_number),
    last_seen = now(),
    metadata = EXCLUDED.metadata,
    connection_type = coalesce(EXCLUDED.connection_type, phone_status.connection_type),
    process_name = coalesce(EXCLUDED.process_name, phone_status.process_name)
RETURNING company_id, phone_index, status, phone_number, last_seen, metadata, connection_type, process_name

-- get_phone_status --
-- One phone's live status row.
SELECT company_id, phone_index, status, phone_number, last_seen, metadata, connection_type, process_name
FROM phone_status WHERE company_id = $1 AND phone_index = $2

-- company_phone_statuses --
-- Each phone of a company, configured or only with a status row, with its live status.
SELECT coalesce(pc.phone_index, ps.phone_index) AS phone_index,
       coalesce(pc.connection_type, ps.connection_type) AS connection_type,
       coalesce(pc.process_name, ps.process_name) AS process_name,
       pc.status AS config_status, pc.display_phone_number, pc.id IS NOT NULL AS configured,
       ps.status, ps.phone_number, ps.last_seen, coalesce(ps.metadata, '{}'::jsonb) AS metadata
FROM (SELECT * FROM phone_configs WHERE company_id = $1) pc
FULL OUTER JOIN (SELECT * FROM phone_status WHERE company_id = $1) ps
  ON ps.phone_index = pc.phone_index
ORDER BY 1

-- company_exists --
-- Whether the company exists (checked before a provider is asked about a claim).
SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)

-- set_phone_setting --
-- Set one key ($3) of a phone's settings to the JSON value $4, or remove it when $4 is NULL
-- (the phone's default applies again); answers the phone, none when it is not configured.
UPDATE phone_configs
SET settings = CASE WHEN $4::jsonb IS NULL THEN settings - $3::text
                    ELSE settings || jsonb_build_object($3::text, $4::jsonb) END,
    updated_at = now()
WHERE company_id = $1 AND phone_index = $2
RETURNING *
