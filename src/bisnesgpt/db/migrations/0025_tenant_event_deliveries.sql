-- 0025_tenant_event_deliveries: a tenant event's webhook deliveries are written in one place.
--
-- Every writer of tenant_events (record_tenant_event, advance_status, the batched `sent`
-- record, accept_outbound) wrote the same delivery rows itself: one per enabled endpoint of
-- the event's company whose event filter matches (empty: every type). A statement trigger
-- now writes them for whatever a statement inserted, in that statement, so they still commit
-- (or roll back) with the event; the writers only insert the event.
CREATE FUNCTION insert_tenant_event_deliveries() RETURNS trigger AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, company_id)
    SELECT e.id, ev.id, ev.company_id
    FROM inserted_events ev JOIN webhook_endpoints e ON e.company_id = ev.company_id
    WHERE e.enabled AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trigger_tenant_events_deliveries AFTER INSERT ON tenant_events
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT EXECUTE FUNCTION insert_tenant_event_deliveries();

-- accept_outbound (0024) as it was, its event's deliveries now the trigger's.
CREATE OR REPLACE FUNCTION accept_outbound(
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
    INSERT INTO tenant_events (id, company_id, phone_index, type, data)
    VALUES (p_event_id, p_company_id, p_phone_index, 'message.status', p_event_data);
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
