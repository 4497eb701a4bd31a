-- 0024_accept_outbound: accepting a message in one statement (one round trip, its own transaction).
--
-- accept_outbound() does, in one statement, what the accept transaction did in seven: the
-- 24-hour window check (Cloud API phones; p_window_contact NULL skips it), the
-- Idempotency-Key claim, the chat's next chat_seq (p_ordered; its chat_sequences row stays
-- locked until the statement commits, so numbers follow commit order), the queued message
-- row, its first history row, its `message.status` tenant event with the webhook deliveries,
-- the key's stored 202 answer (p_key_answer NULL: the key stays in_flight, as with ?wait=),
-- and whether the new message is its chat's head. Called outside any transaction, the
-- statement is the transaction: nothing is committed unless all of it is.
--
-- Outcomes: 'stored' (message is the new row); 'window_closed' (nothing written;
-- last_inbound says when the contact last wrote, NULL: never); 'key_taken' (nothing
-- written: the key is another request's or has an answer; the caller takes the slow path,
-- which replays it or answers 409/422). A message that already exists under the key (a
-- request that died after storing it with ?wait=) raises the unique violation, as the
-- INSERT did.
CREATE FUNCTION accept_outbound(
    p_message_id TEXT, p_company_id TEXT, p_phone_index INTEGER, p_provider TEXT, p_connection_type TEXT,
    p_chat_id TEXT, p_message_type TEXT, p_content TEXT, p_media_url TEXT, p_media_id TEXT,
    p_media_mime_type TEXT, p_media_filename TEXT, p_payload JSONB, p_raw JSONB, p_context_message_id TEXT,
    p_idempotency_key TEXT, p_queue_name TEXT, p_process_name TEXT, p_source TEXT, p_deadline_at TIMESTAMPTZ,
    p_ordered BOOLEAN, p_window_contact TEXT,
    p_key_request_hash TEXT, p_key_method TEXT, p_key_path TEXT, p_key_ttl INTERVAL, p_key_stale INTERVAL,
    p_key_answer JSONB, p_event_id TEXT, p_event_data JSONB,
    OUT outcome TEXT, OUT last_inbound TIMESTAMPTZ, OUT is_head BOOLEAN, OUT message messages
) AS $$
DECLARE
    v_seq BIGINT;
    v_head BIGINT;
BEGIN
    is_head := TRUE;
    IF p_window_contact IS NOT NULL THEN
        SELECT s.last_inbound_at INTO last_inbound FROM conversation_sessions s
        WHERE s.company_id = p_company_id AND s.phone_index = p_phone_index AND s.contact = p_window_contact;
        IF last_inbound IS NULL OR now() - last_inbound > INTERVAL '24 hours' THEN
            outcome := 'window_closed';
            RETURN;
        END IF;
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys AS k (company_id, key, request_hash, method, path, state, expires_at)
        VALUES (p_company_id, p_idempotency_key, p_key_request_hash, p_key_method, p_key_path, 'in_flight',
                now() + p_key_ttl)
        ON CONFLICT (company_id, key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash, method = EXCLUDED.method, path = EXCLUDED.path,
            state = 'in_flight', response_status = NULL, response_body = NULL,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE k.expires_at < now()
           OR (k.state = 'in_flight' AND k.created_at < now() - p_key_stale
               AND k.request_hash = EXCLUDED.request_hash);
        IF NOT FOUND THEN
            outcome := 'key_taken';
            RETURN;
        END IF;
    END IF;
    IF p_ordered THEN
        INSERT INTO chat_sequences AS c (company_id, phone_index, chat_id, last_seq)
        VALUES (p_company_id, p_phone_index, p_chat_id, 1)
        ON CONFLICT (company_id, phone_index, chat_id) DO UPDATE SET last_seq = c.last_seq + 1, updated_at = now()
        RETURNING last_seq INTO v_seq;
    END IF;
    INSERT INTO messages (
        message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
        message_type, content, media_url, media_id, media_mime_type, media_filename, payload, raw,
        status, context_message_id, idempotency_key, queue_name, process_name, source, deadline_at,
        queued_at, chat_seq)
    VALUES (p_message_id, p_company_id, p_phone_index, 'outbound', p_provider, p_connection_type, p_chat_id,
            p_message_type, p_content, p_media_url, p_media_id, p_media_mime_type, p_media_filename, p_payload,
            p_raw, 'queued', p_context_message_id, p_idempotency_key, p_queue_name, p_process_name, p_source,
            p_deadline_at, now(), v_seq)
    RETURNING * INTO message;
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    VALUES (message.id, NULL, 'queued', p_source, jsonb_build_object('queue', p_queue_name));
    WITH event AS (
        INSERT INTO tenant_events (id, company_id, phone_index, type, data)
        VALUES (p_event_id, p_company_id, p_phone_index, 'message.status', p_event_data)
        RETURNING id, company_id, type
    )
    INSERT INTO webhook_deliveries (endpoint_id, event_id, company_id)
    SELECT e.id, event.id, event.company_id
    FROM event JOIN webhook_endpoints e ON e.company_id = event.company_id
    WHERE e.enabled AND (cardinality(e.event_types) = 0 OR event.type = ANY (e.event_types));
    IF p_idempotency_key IS NOT NULL AND p_key_answer IS NOT NULL THEN
        UPDATE idempotency_keys SET state = 'completed', response_status = 202, response_body = p_key_answer
        WHERE company_id = p_company_id AND key = p_idempotency_key;
    END IF;
    IF v_seq IS NOT NULL THEN
        SELECT m.id INTO v_head FROM messages m
        WHERE m.company_id = p_company_id AND m.phone_index = p_phone_index AND m.chat_id = p_chat_id
          AND m.chat_seq IS NOT NULL AND m.direction = 'outbound' AND m.status IN ('accepted', 'queued', 'sending')
        ORDER BY m.chat_seq
        LIMIT 1;
        is_head := v_head IS NULL OR v_head = message.id;
    END IF;
    outcome := 'stored';
END;
$$ LANGUAGE plpgsql;
