-- key_state --
-- An API key's role, company, whether it is still active (not revoked, not expired), its hash
-- and its company's status.
SELECT k.role, k.company_id, k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AS active,
       k.key_hash, c.status AS company_status
FROM api_keys k LEFT JOIN companies c ON c.id = k.company_id
WHERE k.id = $1

-- recent_events --
-- Process events of these severities ($1), of one process ($2) or all, newest first, at most $3.
SELECT id, process_name, event_type, event_data, severity, timestamp FROM process_events
WHERE severity = ANY($1::text[]) AND ($2::text IS NULL OR process_name = $2)
ORDER BY id DESC LIMIT $3

-- now_epoch --
-- The database's clock, as epoch seconds (the charts' time axis).
SELECT EXTRACT(EPOCH FROM now())::float8

-- metric_series --
-- Every chart's values from process_metrics over the last $1 seconds in buckets of $2 seconds,
-- as (chart, bucket start, label, value): rates per minute, latency p50 the mean and p99 the
-- highest of a bucket's minutes, RSS summed over a role's processes.
WITH recent AS (
    SELECT floor(EXTRACT(EPOCH FROM timestamp) / $2) * $2 AS b, process_name, metric_name, metric_value, metadata
    FROM process_metrics
    WHERE timestamp >= now() - make_interval(secs => $1)
      AND metric_name IN ('rss_mb', 'queue_depth', 'messages_sent', 'messages_failed', 'send_latency_p50_ms',
                          'send_latency_p99_ms')
)
SELECT 'rss' AS chart, b, role AS label, sum(v) AS value FROM (
    SELECT b, process_name, split_part(process_name, '-', 1) AS role, avg(metric_value) AS v
    FROM recent WHERE metric_name = 'rss_mb'
    GROUP BY b, process_name, role
) per_process GROUP BY b, role
UNION ALL
SELECT 'queueDepth', b, metadata->>'queue', max(metric_value)
FROM recent WHERE metric_name = 'queue_depth' GROUP BY 2, 3
UNION ALL
SELECT 'sent', b, metadata->>'provider', sum(metric_value) / ($2 / 60.0)
FROM recent WHERE metric_name = 'messages_sent' GROUP BY 2, 3
UNION ALL
SELECT 'failed', b, metadata->>'code', sum(metric_value) / ($2 / 60.0)
FROM recent WHERE metric_name = 'messages_failed' GROUP BY 2, 3
UNION ALL
SELECT 'latency', b, (metadata->>'provider') || ' p50', avg(metric_value)
FROM recent WHERE metric_name = 'send_latency_p50_ms' GROUP BY 2, 3
UNION ALL
SELECT 'latency', b, (metadata->>'provider') || ' p99', max(metric_value)
FROM recent WHERE metric_name = 'send_latency_p99_ms' GROUP BY 2, 3

-- not_rolled_up_since --
-- The first minute the rollup has not written yet (the rollup's watermark); with no rollup at
-- all, the start of the last $1 seconds.
SELECT coalesce(max(timestamp) + interval '1 minute', date_trunc('minute', now()) - make_interval(secs => $1))
FROM process_metrics WHERE metric_name = 'messages_sent'

-- sent_not_rolled_up --
-- Messages sent from $1 to $2, straight from messages, in buckets of $3 seconds: the count
-- ('sent') and the p50 and p99 of accept -> sent ('latency'), per engine.
WITH sent AS (
    SELECT floor(EXTRACT(EPOCH FROM date_trunc('minute', sent_at)) / $3) * $3 AS b, provider,
           EXTRACT(EPOCH FROM sent_at - created_at) * 1000 AS latency_ms
    FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound'
)
SELECT 'sent' AS chart, b, provider AS label, count(*)::float8 AS value FROM sent GROUP BY 2, 3
UNION ALL
SELECT 'latency', b, provider || ' p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
FROM sent GROUP BY b, provider
UNION ALL
SELECT 'latency', b, provider || ' p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)
FROM sent GROUP BY b, provider

-- failures_per_minute --
-- Outbound messages that failed from $1 to $2, per minute, error code and provider, counting
-- failures an operator has re-queued since (their error is in the re-queue's history row).
SELECT date_trunc('minute', f.failed_at) AS minute, f.code, f.provider, count(*)::int AS n
FROM (
    SELECT failed_at, coalesce(error_code, 'UNKNOWN') AS code, provider
    FROM messages WHERE failed_at >= $1 AND failed_at < $2 AND direction = 'outbound'
    UNION ALL
    SELECT (h.detail->'previousError'->>'failedAt')::timestamptz,
           coalesce(h.detail->'previousError'->>'code', 'UNKNOWN'), m.provider
    FROM message_status_history h JOIN messages m ON m.id = h.message_pk
    WHERE h.source = 'operator' AND h.to_status = 'queued' AND h.created_at >= $1
      AND (h.detail->'previousError'->>'failedAt')::timestamptz >= $1
      AND (h.detail->'previousError'->>'failedAt')::timestamptz < $2
) f
GROUP BY 1, 2, 3

-- rollup_window --
-- The minutes to roll up: from the watermark (or $1 minutes back, the first time) to the last
-- minute that ended at least $2 seconds ago.
SELECT coalesce(max(timestamp) + interval '1 minute',
                date_trunc('minute', now()) - make_interval(mins => $1)) AS start_at,
       date_trunc('minute', now() - make_interval(secs => $2)) AS end_at
FROM process_metrics WHERE metric_name = 'messages_sent'

-- insert_sent_counts --
-- messages_sent for every minute from $1 to $2 and every engine ($4, and any other that sent),
-- zero included; written by process $3.
WITH minutes AS (
    SELECT generate_series($1::timestamptz, $2::timestamptz - interval '1 minute', interval '1 minute') AS minute
), sent AS (
    SELECT date_trunc('minute', sent_at) AS minute, provider, count(*) AS n
    FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound'
    GROUP BY 1, 2
), engines AS (
    SELECT unnest($4::text[]) AS provider UNION SELECT DISTINCT provider FROM sent
)
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $3, 'messages_sent', coalesce(s.n, 0), 'gauge', m.minute, jsonb_build_object('provider', e.provider)
FROM minutes m CROSS JOIN engines e LEFT JOIN sent s ON s.minute = m.minute AND s.provider = e.provider

-- insert_latencies --
-- send_latency_p50_ms / _p99_ms (accept -> sent) per minute and engine from $1 to $2; by process $3.
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $3, q.name, q.value, 'gauge', l.minute, jsonb_build_object('provider', l.provider)
FROM (
    SELECT date_trunc('minute', sent_at) AS minute, provider,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000) AS p99
    FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound'
    GROUP BY 1, 2
) l
CROSS JOIN LATERAL (VALUES ('send_latency_p50_ms', l.p50), ('send_latency_p99_ms', l.p99)) AS q(name, value)

-- insert_failed_counts --
-- messages_failed rows, one per (minute $2, code $3, provider $4) with its count $5; by process $1.
INSERT INTO process_metrics (process_name, metric_name, metric_value, metric_type, timestamp, metadata)
SELECT $1, 'messages_failed', f.n, 'gauge', f.minute, jsonb_build_object('code', f.code, 'provider', f.provider)
FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::int[]) AS f(minute, code, provider, n)

-- requeue_failed --
-- failed -> queued for outbound message $1 (locked), with a history row by source $2 naming who
-- ($3), the queue ($4) and the error it had; answers the message and its previous status and
-- direction (only those two when nothing changed; no row for no such message).
WITH prev AS (
    SELECT id, status, direction, error_code, error_title, error_details, failed_at
    FROM messages WHERE id = $1 FOR UPDATE
), upd AS (
    UPDATE messages m SET status = 'queued', queued_at = now(), error_code = NULL, error_title = NULL,
                          error_details = NULL, failed_at = NULL
    FROM prev
    WHERE m.id = prev.id AND prev.status = 'failed' AND prev.direction = 'outbound'
    RETURNING m.id, m.message_id, m.company_id, m.phone_index, m.chat_id, m.external_id, m.provider
), hist AS (
    INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail)
    SELECT upd.id, 'failed', 'queued', $2,
           jsonb_build_object('action', 'retry', 'by', $3::text, 'queue', $4::text,
                              'previousError', jsonb_build_object('code', prev.error_code, 'title', prev.error_title,
                                                                  'details', prev.error_details,
                                                                  'failedAt', prev.failed_at))
    FROM upd JOIN prev ON prev.id = upd.id
)
SELECT upd.*, (SELECT status FROM prev) AS previous_status, (SELECT direction FROM prev) AS direction
FROM upd
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT status FROM prev), (SELECT direction FROM prev)
WHERE NOT EXISTS (SELECT 1 FROM upd)

-- search_messages_by_id --
-- Messages of company $1 (or any) whose id or provider id is $2, newest first, at most $3.
SELECT * FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND (message_id = $2 OR external_id = $2)
ORDER BY id DESC LIMIT $3

-- search_messages_by_chat --
-- Messages of company $1 (or any) in chat $2, newest first, at most $3.
SELECT * FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND chat_id = $2
ORDER BY id DESC LIMIT $3

-- recent_messages --
-- The latest messages of company $1 (or any), in status $2 (or any), at most $3.
SELECT * FROM messages
WHERE ($1::text IS NULL OR company_id = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC LIMIT $3

-- message_deliveries --
-- The tenant webhook deliveries of message $2's events (company $1, created since $3), in order.
SELECT d.id, d.endpoint_id, e.url, d.event_id, te.type AS event_type, te.data->>'status' AS event_status,
       d.origin, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at,
       d.delivered_at, d.dead_at, d.created_at
FROM tenant_events te
JOIN webhook_deliveries d ON d.event_id = te.id
JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE te.company_id = $1 AND te.created_at >= $3::timestamptz - interval '1 minute' AND te.data->>'message_id' = $2
ORDER BY d.id
LIMIT 200

-- messages_by_ids --
-- The messages with these ids ($1), any company.
SELECT * FROM messages WHERE message_id = ANY($1::text[])

-- active_phones --
-- How many phones of company $1 (or all) had a message in or out in the last $2 minutes.
SELECT count(DISTINCT (company_id, phone_index)) FROM conversation_sessions
WHERE ($1::text IS NULL OR company_id = $1)
  AND greatest(last_inbound_at, last_outbound_at) > now() - make_interval(mins => $2)

-- companies --
-- Company $1 (or every company): id, name, status, by id.
SELECT id, name, status FROM companies WHERE ($1::text IS NULL OR id = $1) ORDER BY id
