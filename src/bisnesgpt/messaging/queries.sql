-- select_message --
-- One message by our id, within a company ($2), or of any company when $2 is NULL.
SELECT * FROM messages WHERE message_id = $1 AND ($2::text IS NULL OR company_id = $2)

-- select_message_by_pk --
-- One message by its row id.
SELECT * FROM messages WHERE id = $1

-- select_outbound_by_external_id --
-- The newest outbound message the provider knows by this id (wamid / WhatsApp-Web id).
SELECT * FROM messages
WHERE external_id = $1 AND direction = 'outbound' ORDER BY id DESC LIMIT 1

-- select_message_by_any_id --
-- A company's message by our id or its provider id; our id wins, then the newest.
SELECT * FROM messages
WHERE company_id = $1 AND (message_id = $2 OR external_id = $2)
ORDER BY (message_id = $2) DESC, id DESC
LIMIT 1

-- select_message_by_idempotency_key --
-- The message a company stored under an Idempotency-Key.
SELECT * FROM messages WHERE company_id = $1 AND idempotency_key = $2

-- select_send_status --
-- What ?wait= polls: a message's status, provider id and error.
SELECT status, external_id, error_code, error_title FROM messages WHERE id = $1

-- select_message_page --
-- A company's messages, newest first, filtered by whichever of $2..$6 are not NULL,
-- before row id $7 (the cursor) when given; $8 rows at most.
SELECT * FROM messages
WHERE company_id = $1
  AND ($2::text IS NULL OR chat_id = $2)
  AND ($3::int IS NULL OR phone_index = $3)
  AND ($4::text IS NULL OR status = $4)
  AND ($5::text IS NULL OR direction = $5)
  AND ($6::text IS NULL OR message_type = $6)
  AND ($7::bigint IS NULL OR id < $7)
ORDER BY id DESC
LIMIT $8

-- select_status_history --
-- A message's state changes and the provider statuses received, oldest first.
SELECT from_status, to_status, source, detail, created_at, applied, provider_at FROM message_status_history
WHERE message_pk = $1 ORDER BY id

-- insert_outbound --
-- A new outbound message, queued; nothing (no row) if its message id exists in the company.
INSERT INTO messages (
    message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
    message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
    status, context_message_id, idempotency_key, queue_name, process_name, source, deadline_at,
    queued_at, chat_seq)
VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb,
        'queued', $15, $16, $17, $18, $19, $20, now(), $21)
ON CONFLICT (message_id, company_id) DO NOTHING
RETURNING *

-- insert_node_job --
-- A Node-format job's message, queued; nothing (no row) if its queue already has a message
-- for this job id ($21, the external_ref).
INSERT INTO messages (
    message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
    message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
    status, context_message_id, idempotency_key, queue_name, process_name, source, deadline_at,
    queued_at, external_ref)
VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb,
        'queued', $15, $16, $17, $18, $19, $20, now(), $21)
ON CONFLICT (queue_name, external_ref) WHERE external_ref IS NOT NULL DO NOTHING
RETURNING *

-- select_message_by_external_ref --
-- The message a queue's job (by its Node BullMQ id) became.
SELECT * FROM messages WHERE queue_name = $1 AND external_ref = $2

-- select_send_target --
-- Whether the company ($1) exists, and whether it has phone $2.
SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1) AS company_found,
       EXISTS (SELECT 1 FROM phone_configs WHERE company_id = $1 AND phone_index = $2) AS phone_found

-- insert_queued_history --
-- The first history row of a new outbound message: (nothing) -> queued.
INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
VALUES ($1, NULL, 'queued', $2, $3::jsonb)

-- claim_for_send --
-- Mark a message sending for one more attempt: queued -> sending, or another attempt
-- while sending (history only for the first). attempts is NULL when it may not be sent;
-- waiting_for names the earliest unfinished message of its chat accepted before it (an
-- ordered message waits for it and is not claimed).
WITH prev AS (
    SELECT id, status, company_id, phone_index, chat_id, chat_seq FROM messages WHERE id = $1 FOR UPDATE
), earlier AS (
    SELECT e.message_id FROM messages e JOIN prev
        ON e.company_id = prev.company_id AND e.phone_index = prev.phone_index AND e.chat_id = prev.chat_id
    WHERE e.chat_seq < prev.chat_seq AND e.direction = 'outbound'
      AND e.status IN ('accepted', 'queued', 'sending')
    ORDER BY e.chat_seq LIMIT 1
), upd AS (
    UPDATE messages m SET status = 'sending', attempts = m.attempts + 1, process_name = $3
    FROM prev WHERE m.id = prev.id AND prev.status IN ('accepted', 'queued', 'sending')
      AND NOT EXISTS (SELECT 1 FROM earlier)
    RETURNING m.id, prev.status AS from_status, m.attempts
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT id, from_status, 'sending', $2, jsonb_build_object('attempt', attempts)
    FROM upd WHERE from_status <> 'sending'
)
SELECT (SELECT status FROM prev) AS previous_status, (SELECT attempts FROM upd) AS attempts,
       (SELECT message_id FROM earlier) AS waiting_for

-- claim_for_send_batch --
-- claim_for_send for many messages in one statement (a write batch): $1 the row ids (distinct),
-- $2 and $3 each one's history source and process name. The rows are locked in the order given;
-- one row per message, ord its place in $1, with what claim_for_send answers for it alone.
WITH item AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS t(id, source, process_name, ord)
), prev AS (
    SELECT m.id, m.status, m.company_id, m.phone_index, m.chat_id, m.chat_seq, item.ord, item.source,
           item.process_name
    FROM messages m JOIN item ON m.id = item.id
    ORDER BY item.ord
    FOR UPDATE OF m
), earlier AS (
    SELECT prev.id, (
        SELECT e.message_id FROM messages e
        WHERE e.company_id = prev.company_id AND e.phone_index = prev.phone_index AND e.chat_id = prev.chat_id
          AND e.chat_seq < prev.chat_seq AND e.direction = 'outbound'
          AND e.status IN ('accepted', 'queued', 'sending')
        ORDER BY e.chat_seq LIMIT 1) AS waiting_for
    FROM prev
), upd AS (
    UPDATE messages m SET status = 'sending', attempts = m.attempts + 1, process_name = prev.process_name
    FROM prev JOIN earlier ON earlier.id = prev.id
    WHERE m.id = prev.id AND prev.status IN ('accepted', 'queued', 'sending') AND earlier.waiting_for IS NULL
    RETURNING m.id, prev.status AS from_status, m.attempts, prev.ord, prev.source
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT id, from_status, 'sending', source, jsonb_build_object('attempt', attempts)
    FROM upd WHERE from_status <> 'sending'
    ORDER BY ord
)
SELECT item.ord, prev.status AS previous_status, upd.attempts, earlier.waiting_for
FROM item
LEFT JOIN prev ON prev.ord = item.ord
LEFT JOIN upd ON upd.ord = item.ord
LEFT JOIN earlier ON earlier.id = item.id
ORDER BY item.ord

-- advance_status --
-- Move a message to $2 if message_status_allows it, with its history row. A provider status
-- ($12 true) that may not move it is recorded all the same: a history row with applied false,
-- its own timestamp column and the pricing/conversation blocks. $9 is the provider's time
-- for the status (NULL: now). A move with $13 (the type, ``message.status``) also writes the
-- tenant event (id $14, raw $15), in this same statement (its webhook deliveries: the
-- tenant_events trigger). Answers the updated row (applied says whether it moved), or one row of NULLs but
-- current_status when nothing was written.
WITH prev AS (
    SELECT id, status FROM messages WHERE id = $1 FOR UPDATE
), moved AS (
    SELECT id, status AS from_status, message_status_allows(status, $2) AS applied FROM prev
), upd AS (
    UPDATE messages m SET
        status        = CASE WHEN moved.applied THEN $2 ELSE m.status END,
        external_id   = CASE WHEN moved.applied THEN coalesce($4, m.external_id) ELSE m.external_id END,
        error_code    = CASE WHEN moved.applied AND $2 = 'failed' THEN $5 ELSE m.error_code END,
        error_title   = CASE WHEN moved.applied AND $2 = 'failed' THEN $6 ELSE m.error_title END,
        error_details = CASE WHEN moved.applied AND $2 = 'failed' THEN $7::jsonb ELSE m.error_details END,
        attempts      = m.attempts + CASE WHEN moved.applied AND $2 = 'sending' THEN 1 ELSE 0 END,
        queued_at     = CASE WHEN moved.applied AND $2 = 'queued' THEN now() ELSE m.queued_at END,
        sent_at       = CASE WHEN $2 = 'sent'
                             THEN coalesce($9, CASE WHEN moved.applied THEN now() END, m.sent_at, now())
                             ELSE m.sent_at END,
        delivered_at  = CASE WHEN $2 = 'delivered'
                             THEN coalesce($9, CASE WHEN moved.applied THEN now() END, m.delivered_at, now())
                             ELSE m.delivered_at END,
        read_at       = CASE WHEN $2 = 'read'
                             THEN coalesce($9, CASE WHEN moved.applied THEN now() END, m.read_at, now())
                             ELSE m.read_at END,
        failed_at     = CASE WHEN $2 = 'failed'
                             THEN coalesce($9, CASE WHEN moved.applied THEN now() END, m.failed_at, now())
                             ELSE m.failed_at END,
        pricing       = coalesce($10::jsonb, m.pricing),
        conversation  = coalesce($11::jsonb, m.conversation)
    FROM moved
    WHERE m.id = moved.id AND (moved.applied OR $12::boolean)
    RETURNING m.id, moved.from_status, m.status AS to_status, m.message_id, m.company_id,
              m.phone_index, m.chat_id, m.external_id, m.direction, m.provider, m.error_code, m.error_title,
              moved.applied
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail, applied, provider_at)
    SELECT id, from_status, $2, $3, $8::jsonb, applied, $9 FROM upd
), event AS (
    INSERT INTO tenant_events (id, company_id, phone_index, type, data, raw)
    SELECT $14, company_id, phone_index, $13::text,
           jsonb_build_object('message_id', message_id, 'external_id', external_id, 'chat_id', chat_id,
                              'direction', direction, 'provider', provider, 'status', $2,
                              'previous_status', from_status)
           || CASE WHEN $2 = 'failed'
                   THEN jsonb_build_object('error', jsonb_build_object('code', error_code, 'title', error_title,
                                                                       'details', $7::jsonb))
                   ELSE '{}'::jsonb END,
           $15::jsonb
    FROM upd WHERE applied AND $13::text IS NOT NULL
)
SELECT upd.*, (SELECT status FROM prev) AS current_status FROM upd
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT status FROM prev)
WHERE NOT EXISTS (SELECT 1 FROM upd)

-- lock_chat_sequences --
-- lock_chat_sequence for many chats ($1, $2, $3: company, phone, chat of each), locked in the order given.
SELECT c.last_seq
FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS t(company_id, phone_index, chat_id, ord)
JOIN chat_sequences c ON c.company_id = t.company_id AND c.phone_index = t.phone_index AND c.chat_id = t.chat_id
ORDER BY t.ord
FOR UPDATE OF c

-- record_sent_batch --
-- What recording ``sent`` does for one message (advance_status to sent with the provider id,
-- its history row, its message.status event (its webhook deliveries: the trigger), then
-- touch_outbound_session and, for an ordered one, select_chat_head), for many messages of
-- distinct chats in one statement (a write batch; their chats locked before). Per message (in
-- the order given, which is the order rows are written in): $1 row id, $2 history source, $3
-- provider id, $4 history detail (JSON text), $5 event id, $6 company, $7 phone, $8 chat, $9
-- contact, $10 whether it is ordered; $11 the event type. Answers each ordered message's
-- chat head after it ended (none when its chat has no unfinished message left).
WITH item AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                         $8::text[], $9::text[], $10::boolean[])
        WITH ORDINALITY AS t(id, source, external_id, detail, event_id, company_id, phone_index, chat_id, contact,
                             ordered, ord)
), prev AS (
    SELECT m.id, m.status, item.ord FROM messages m JOIN item ON m.id = item.id
    ORDER BY item.ord
    FOR UPDATE OF m
), moved AS (
    SELECT id, ord, status AS from_status FROM prev WHERE message_status_allows(status, 'sent')
), upd AS (
    UPDATE messages m SET status = 'sent', external_id = coalesce(item.external_id, m.external_id), sent_at = now()
    FROM moved JOIN item ON item.ord = moved.ord
    WHERE m.id = moved.id
    RETURNING m.id, moved.from_status, moved.ord, item.source, item.detail, item.event_id, m.message_id,
              m.company_id, m.phone_index, m.chat_id, m.external_id, m.direction, m.provider
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail, applied, provider_at)
    SELECT id, from_status, 'sent', source, detail::jsonb, true, NULL FROM upd
    ORDER BY ord
), event AS (
    INSERT INTO tenant_events (id, company_id, phone_index, type, data, raw)
    SELECT event_id, company_id, phone_index, $11::text,
           jsonb_build_object('message_id', message_id, 'external_id', external_id, 'chat_id', chat_id,
                              'direction', direction, 'provider', provider, 'status', 'sent',
                              'previous_status', from_status),
           NULL::jsonb
    FROM upd
    ORDER BY ord
), sessions AS (
    INSERT INTO conversation_sessions (company_id, phone_index, contact, last_outbound_at)
    SELECT company_id, phone_index, contact, now() FROM item
    GROUP BY company_id, phone_index, contact
    ORDER BY min(ord)
    ON CONFLICT (company_id, phone_index, contact) DO UPDATE SET last_outbound_at = now()
)
SELECT item.ord, h.id, h.message_id, h.company_id, h.phone_index, h.status, h.queue_name, h.chat_seq
FROM item CROSS JOIN LATERAL (
    SELECT id, message_id, company_id, phone_index, status, queue_name, chat_seq
    FROM messages
    WHERE company_id = item.company_id AND phone_index = item.phone_index AND chat_id = item.chat_id
      AND chat_seq IS NOT NULL AND direction = 'outbound' AND status IN ('accepted', 'queued', 'sending')
      AND id <> item.id  -- itself: ended by this statement, whose reads do not see its own writes
    ORDER BY chat_seq
    LIMIT 1
) h
WHERE item.ordered
ORDER BY item.ord

-- touch_outbound_session --
-- The conversation's last outbound message was now.
INSERT INTO conversation_sessions (company_id, phone_index, contact, last_outbound_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (company_id, phone_index, contact) DO UPDATE SET last_outbound_at = now()

-- touch_inbound_session --
-- The conversation's last inbound message was at $4 (never moved back: the 24 h window).
INSERT INTO conversation_sessions (company_id, phone_index, contact, last_inbound_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (company_id, phone_index, contact) DO UPDATE
SET last_inbound_at = GREATEST(conversation_sessions.last_inbound_at, EXCLUDED.last_inbound_at)

-- select_unfinished_outbound --
-- Outbound messages still queued/sending, untouched for $1 seconds, after row id $2; $3 at most.
-- An ordered message only when it is its chat's head (nothing accepted before it unfinished):
-- the others get their job when the one before them ends.
SELECT m.id, m.message_id, m.company_id, m.phone_index, m.status, m.queue_name
FROM messages m
WHERE m.status IN ('queued', 'sending') AND m.direction = 'outbound'
  AND m.updated_at < now() - make_interval(secs => $1)
  AND m.id > $2
  AND (m.chat_seq IS NULL OR NOT EXISTS (
      SELECT 1 FROM messages e
      WHERE e.company_id = m.company_id AND e.phone_index = m.phone_index AND e.chat_id = m.chat_id
        AND e.chat_seq < m.chat_seq AND e.direction = 'outbound'
        AND e.status IN ('accepted', 'queued', 'sending')))
ORDER BY m.id
LIMIT $3

-- claim_idempotency_key --
-- Take a key in_flight for this request: a new one, an expired one, or a stale in_flight
-- one ($7 old) of the same request. Answers the key, or nothing when it is someone else's.
INSERT INTO idempotency_keys AS k (company_id, key, request_hash, method, path, state, expires_at)
VALUES ($1, $2, $3, $4, $5, 'in_flight', now() + $6::interval)
ON CONFLICT (company_id, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, method = EXCLUDED.method, path = EXCLUDED.path,
    state = 'in_flight', response_status = NULL, response_body = NULL,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE k.expires_at < now()
   OR (k.state = 'in_flight' AND k.created_at < now() - $7::interval AND k.request_hash = EXCLUDED.request_hash)
RETURNING key

-- select_idempotency_key --
-- A key's request, state and stored answer; stale: in_flight for longer than $3.
-- Only an unexpired key when $4 is true.
SELECT request_hash, method, path, state, response_status, response_body,
       created_at < now() - $3::interval AS stale
FROM idempotency_keys WHERE company_id = $1 AND key = $2 AND (NOT $4::boolean OR expires_at >= now())

-- complete_idempotency_key --
-- Store the answer to replay for a key.
UPDATE idempotency_keys SET state = 'completed', response_status = $3, response_body = $4::jsonb
WHERE company_id = $1 AND key = $2

-- insert_tenant_event --
-- One tenant event (its delivery rows, one for each enabled endpoint of the company that wants
-- it, are written by the tenant_events trigger, migration 0025).
INSERT INTO tenant_events (id, company_id, phone_index, type, data, raw)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)

-- next_chat_seq --
-- The next number of a chat's ordered messages; the chat's row stays locked until the
-- accepting transaction commits, so numbers follow commit order.
INSERT INTO chat_sequences AS c (company_id, phone_index, chat_id, last_seq)
VALUES ($1, $2, $3, 1)
ON CONFLICT (company_id, phone_index, chat_id) DO UPDATE SET last_seq = c.last_seq + 1, updated_at = now()
RETURNING last_seq

-- lock_chat_sequence --
-- Lock a chat's row before ending one of its messages: a message accepted meanwhile either
-- committed before (and is found as the next head) or sees this one ended.
SELECT last_seq FROM chat_sequences WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3 FOR UPDATE

-- select_chat_head --
-- A chat's earliest unfinished ordered message: the one that may be sent now.
SELECT id, message_id, company_id, phone_index, status, queue_name, chat_seq
FROM messages
WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3 AND chat_seq IS NOT NULL
  AND direction = 'outbound' AND status IN ('accepted', 'queued', 'sending')
ORDER BY chat_seq
LIMIT 1
-- usage_billing --
-- Meta's billing data of messages sent in [$2, $3), per company (only $1's when not NULL),
-- phone, category and pricing model: messages, the billable ones, distinct conversations.
SELECT company_id, phone_index,
       coalesce(pricing->>'category', conversation->'origin'->>'type', 'unknown') AS category,
       coalesce(pricing->>'pricing_model', 'unknown') AS pricing_model,
       count(*)::int AS messages,
       count(*) FILTER (WHERE (pricing->>'billable')::boolean)::int AS billable_messages,
       count(DISTINCT conversation->>'id')::int AS conversations
FROM messages
WHERE ($1::text IS NULL OR company_id = $1)
  AND direction = 'outbound' AND (pricing IS NOT NULL OR conversation IS NOT NULL)
  AND sent_at >= $2 AND sent_at < $3
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4

-- usage_statuses --
-- Messages created in [$2, $3), per company (only $1's when not NULL), phone, engine,
-- direction and current status.
SELECT company_id, phone_index, provider, direction, status, count(*)::int AS messages
FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND created_at >= $2 AND created_at < $3
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5

-- select_sent_changes --
-- The edits and deletes of the companies $1 that went out (sent or later) for the provider
-- ids $2, in the order they were sent.
SELECT * FROM messages
WHERE company_id = ANY($1::text[]) AND context_message_id = ANY($2::text[])
  AND direction = 'outbound' AND message_type IN ('edit', 'delete')
  AND status IN ('sent', 'delivered', 'read')
ORDER BY sent_at, id

-- accept_outbound --
-- The common accept in one statement (migration 0024): window check, key claim, chat number,
-- message, history, tenant event, key answer; the outcome, and the messages row's columns when stored.
SELECT a.outcome, a.last_inbound, a.is_head, (a.message::messages).*
FROM accept_outbound($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, $15, $16, $17,
                     $18, $19, $20, $21, $22, $23, $24, $25, $26::interval, $27::interval, $28::jsonb, $29,
                     $30::jsonb) a

-- learn_lid --
-- Keep that a LID ($3) was seen on a phone, with its number ($4) when the protocol revealed it (a number, once known, is kept; a different revealed number replaces it); the row as it is now.
INSERT INTO contact_lids (company_id, phone_index, lid, number, learned_at)
VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END)
ON CONFLICT (company_id, phone_index, lid) DO UPDATE
    SET number = COALESCE(EXCLUDED.number, contact_lids.number),
        learned_at = CASE WHEN EXCLUDED.number IS NOT NULL AND EXCLUDED.number IS DISTINCT FROM contact_lids.number
                          THEN now() ELSE contact_lids.learned_at END
RETURNING lid, number

-- lid_of_number --
-- The LID a phone learnt for a number, if any (the most recently learnt).
SELECT lid FROM contact_lids
WHERE company_id = $1 AND phone_index = $2 AND number = $3
ORDER BY learned_at DESC NULLS LAST LIMIT 1

-- message_media_object --
-- The media object ($2's bytes in the media store, med_…) a company's message carries, if any.
SELECT media_object_id FROM messages WHERE company_id = $1 AND id = $2

-- select_failed_by_provider --
-- Outbound messages of company $1 (or any) that a provider's status webhook failed (the last
-- applied move to failed came from a '<provider>-webhook' source), failed in the last $4
-- seconds, of phone $2 and error code $3 (NULL: any); newest first, $5 rows from row $6, each
-- with the total. Bounded by time so idx_messages_failed_at reads only that window's failures.
SELECT m.message_id, m.company_id, m.phone_index, m.provider, m.chat_id, m.external_id, m.error_code,
       m.error_title, m.sent_at, m.failed_at, h.source, count(*) OVER () AS total
FROM messages m
JOIN LATERAL (
    SELECT source FROM message_status_history
    WHERE message_pk = m.id AND to_status = 'failed' AND applied
    ORDER BY id DESC LIMIT 1
) h ON h.source LIKE '%-webhook'
WHERE m.failed_at >= now() - make_interval(secs => $4) AND m.status = 'failed' AND m.direction = 'outbound'
  AND ($1::text IS NULL OR m.company_id = $1) AND ($2::int IS NULL OR m.phone_index = $2)
  AND ($3::text IS NULL OR m.error_code = $3)
ORDER BY m.failed_at DESC, m.id DESC
LIMIT $5 OFFSET $6
