-- last_inbound_at --
-- When the contact last wrote to the phone (the start of its 24-hour window); no row: never.
SELECT last_inbound_at FROM conversation_sessions
WHERE company_id = $1 AND phone_index = $2 AND contact = $3

-- phones_of_waba --
-- The phones of one WhatsApp Business Account, in a stable order.
SELECT * FROM phone_configs WHERE meta_waba_id = $1 ORDER BY company_id, phone_index

-- d360_phones_by_display_number --
-- The 360dialog phones with this display number, digits only ($1): their webhooks may carry no
-- phone_number_id, only the number. All of them: more than one is no answer (never a guess).
SELECT * FROM phone_configs
WHERE connection_type = '360dialog' AND regexp_replace(coalesce(display_phone_number, ''), '[^0-9]', '', 'g') = $1
ORDER BY company_id, phone_index

-- insert_inbound_message --
-- Store one inbound webhook message, once per provider id and phone; no row when it is a duplicate.
-- $18 is Meta's timestamp of the message (when the contact sent it); delivered_at is when it reached us.
INSERT INTO messages (
    message_id, company_id, phone_index, direction, provider, connection_type, chat_id, message_type,
    content, media_url, media_id, media_mime_type, media_filename, payload, raw, status, external_id,
    context_message_id, source, process_name, provider_timestamp, delivered_at)
VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, 'delivered', $15,
        $16, $17, 'meta', $18, now())
ON CONFLICT (company_id, phone_index, external_id) WHERE direction = 'inbound' AND external_id IS NOT NULL
DO NOTHING
RETURNING id, message_id

-- keep_webhook_change --
-- Keep a webhook change that is not a message or status, or one kept aside ($9: routing, $10: the
-- candidate phones), once per content hash; no row when seen before.
INSERT INTO meta_webhook_changes (provider, company_id, phone_index, waba_id, phone_number_id, field, value,
                                  value_hash, routing, candidates)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10::jsonb)
ON CONFLICT (provider, value_hash) DO NOTHING
RETURNING id

-- unrouted_webhook_changes --
-- Webhook changes kept aside (no phone, or more than one, matched), newest first, at most $1.
SELECT id, provider, waba_id, phone_number_id, field, routing, candidates, value, received_at
FROM meta_webhook_changes WHERE routing <> 'routed'
ORDER BY received_at DESC, id DESC LIMIT $1
