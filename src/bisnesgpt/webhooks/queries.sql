-- lock_company --
-- Lock a company row so endpoint creation is serialised per company (the per-company limit holds).
SELECT id FROM companies WHERE id = $1 FOR UPDATE

-- count_company_endpoints --
-- How many endpoints a company has.
SELECT count(*) FROM webhook_endpoints WHERE company_id = $1

-- insert_endpoint --
-- A new endpoint; one created disabled records when it was disabled.
INSERT INTO webhook_endpoints (id, company_id, url, description, event_types, enabled, include_raw,
                               headers_encrypted, secret_encrypted, disabled_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $6 THEN NULL ELSE now() END)
RETURNING *

-- get_endpoint --
-- One endpoint by id.
SELECT * FROM webhook_endpoints WHERE id = $1

-- list_endpoints --
-- Every endpoint, or one company's ($1 NULL: all companies).
SELECT * FROM webhook_endpoints
WHERE ($1::text IS NULL OR company_id = $1) ORDER BY company_id, created_at, id

-- update_endpoint --
-- Change an endpoint: NULL parameters leave a field as it is; $6 says whether headers were given at all.
-- Enabling clears the failure streak and any disabled notice; disabling records when.
UPDATE webhook_endpoints SET
    url = coalesce($2, url),
    description = coalesce($3, description),
    event_types = coalesce($4, event_types),
    include_raw = coalesce($5, include_raw),
    headers_encrypted = CASE WHEN $6 THEN $7 ELSE headers_encrypted END,
    enabled = coalesce($8, enabled),
    disabled_at = CASE WHEN $8 IS NULL OR $8 = enabled THEN disabled_at WHEN $8 THEN NULL ELSE now() END,
    disabled_reason = CASE WHEN $8 IS NULL OR $8 = enabled THEN disabled_reason ELSE NULL END,
    consecutive_failures = CASE WHEN $8 AND NOT enabled THEN 0 ELSE consecutive_failures END,
    failing_since = CASE WHEN $8 AND NOT enabled THEN NULL ELSE failing_since END
WHERE id = $1
RETURNING *

-- delete_endpoint --
-- Delete an endpoint (its delivery rows go with it); answers its id when it existed.
DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id

-- rotate_secret --
-- A new signing secret: the current one becomes the previous one (signing too until it expires),
-- unless the overlap $3 is 0. A second rotation within the window drops the oldest secret.
UPDATE webhook_endpoints SET
    previous_secret_encrypted = CASE WHEN $3 > 0 THEN secret_encrypted END,
    previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,
    secret_encrypted = $2
WHERE id = $1
RETURNING *

-- list_deliveries --
-- An endpoint's delivery log, newest first, with optional status, page ($3: ids below) and event filters.
SELECT d.*, ev.type AS event_type, ev.created_at AS event_created_at
FROM webhook_deliveries d JOIN tenant_events ev ON ev.id = d.event_id
WHERE d.endpoint_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::bigint IS NULL OR d.id < $3)
  AND ($4::text IS NULL OR d.event_id = $4)
ORDER BY d.id DESC
LIMIT $5

-- get_delivery --
-- One delivery row of an endpoint, with its event's type and time.
SELECT d.*, ev.type AS event_type, ev.created_at AS event_created_at
FROM webhook_deliveries d JOIN tenant_events ev ON ev.id = d.event_id
WHERE d.id = $1 AND d.endpoint_id = $2

-- notify_workers --
-- Wake the delivery workers now ($1: the channel they LISTEN on).
SELECT pg_notify($1, '')

-- retry_delivery --
-- Re-open one row for an immediate attempt in a fresh retry window (any finished or waiting row;
-- not one in flight); answers its id when it was re-opened.
UPDATE webhook_deliveries SET
    status = 'pending', attempts = 0, next_attempt_at = now(), window_started_at = now(),
    delivered_at = NULL, dead_at = NULL
WHERE id = $1 AND endpoint_id = $2 AND (locked_until IS NULL OR locked_until <= now())
RETURNING id

-- retry_dead_deliveries --
-- Re-open every dead row of an endpoint for an immediate attempt in a fresh retry window.
UPDATE webhook_deliveries SET
    status = 'pending', attempts = 0, next_attempt_at = now(), window_started_at = now(), dead_at = NULL
WHERE endpoint_id = $1 AND status = 'dead'

-- resume_endpoint_deliveries --
-- Re-enabling an endpoint resumes what waited while it was disabled, in a fresh window.
UPDATE webhook_deliveries SET next_attempt_at = now(), window_started_at = now()
WHERE endpoint_id = $1 AND status IN ('pending', 'retrying')

-- replay_events --
-- Replay: a new delivery row per event of the company in [since $2, until $3) that the endpoint's
-- filter (and $5, when given) accepts, skipping events already waiting for this endpoint; at most $4.
-- Batches continue after the last (created_at, id) of the previous one ($6).
WITH ep AS (
    SELECT id, company_id, event_types FROM webhook_endpoints WHERE id = $1
), chosen AS (
    SELECT ev.id, ev.created_at
    FROM ep JOIN tenant_events ev ON ev.company_id = ep.company_id
    WHERE ev.created_at >= $2
      AND ($3::timestamptz IS NULL OR ev.created_at < $3)
      AND (cardinality(ep.event_types) = 0 OR ev.type = ANY (ep.event_types))
      AND ($5::text[] IS NULL OR ev.type = ANY ($5))
      AND ($6::text IS NULL OR (ev.created_at, ev.id) > ($2, $6))
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries w
          WHERE w.endpoint_id = ep.id AND w.event_id = ev.id AND w.status IN ('pending', 'retrying'))
    ORDER BY ev.created_at, ev.id
    LIMIT $4
), last_chosen AS (
    SELECT id, created_at FROM chosen ORDER BY created_at DESC, id DESC LIMIT 1
), inserted AS (
    INSERT INTO webhook_deliveries (endpoint_id, event_id, company_id, origin)
    SELECT ep.id, chosen.id, ep.company_id, 'replay'
    FROM chosen CROSS JOIN ep
    ORDER BY chosen.created_at, chosen.id
    RETURNING event_id
)
SELECT (SELECT count(*) FROM inserted) AS replayed,
       (SELECT created_at FROM last_chosen) AS last_created_at, (SELECT id FROM last_chosen) AS last_event_id

-- count_deliveries_by_status --
-- Delivery rows per status, of one endpoint ($1) or of all.
SELECT status, count(*) AS n FROM webhook_deliveries WHERE ($1::text IS NULL OR endpoint_id = $1) GROUP BY status

-- lock_due_endpoints --
-- The first statement of a claim: lock up to $1 enabled endpoints that have due rows, skipping
-- endpoints another worker is claiming for right now. The claim's second statement
-- (claim_due_deliveries), whose snapshot sees every claim committed before these locks were
-- granted, counts each locked endpoint's rows in flight and takes due rows up to its bound (in
-- one statement the count could come from a snapshot older than a concurrent claim and exceed it).
SELECT e.id
FROM webhook_endpoints e
WHERE e.enabled
  AND EXISTS (
      SELECT 1 FROM webhook_deliveries d
      WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'retrying') AND d.next_attempt_at <= now()
        AND (d.locked_until IS NULL OR d.locked_until <= now()))
ORDER BY (SELECT min(d.next_attempt_at) FROM webhook_deliveries d
          WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'retrying')), e.id
LIMIT $1
FOR NO KEY UPDATE OF e SKIP LOCKED

-- claim_due_deliveries --
-- The second statement of a claim: take due rows of the locked endpoints $2 for holder $1, at most
-- $3 in flight per endpoint and $4 in all, for $5 seconds; answers each attempt to make.
WITH picked AS (
    SELECT p.id, p.next_attempt_at
    FROM unnest($2::text[]) AS locked(endpoint_id)
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at
        FROM webhook_deliveries d
        WHERE d.endpoint_id = locked.endpoint_id AND d.status IN ('pending', 'retrying')
          AND d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until <= now())
        ORDER BY d.next_attempt_at, d.id
        LIMIT greatest(0, $3 - (SELECT count(*) FROM webhook_deliveries f
                                WHERE f.endpoint_id = locked.endpoint_id AND f.locked_until IS NOT NULL
                                  AND f.locked_until > now() AND f.status IN ('pending', 'retrying')))
        FOR NO KEY UPDATE OF d SKIP LOCKED
    ) p
    ORDER BY p.next_attempt_at, p.id
    LIMIT $4
)
UPDATE webhook_deliveries d SET
    locked_by = $1,
    locked_until = now() + make_interval(secs => $5),
    attempts = d.attempts + 1,
    last_attempt_at = now(),
    last_attempt_by = $1
FROM picked, webhook_endpoints e, tenant_events ev
WHERE d.id = picked.id AND e.id = d.endpoint_id AND ev.id = d.event_id
  AND d.status IN ('pending', 'retrying') AND (d.locked_until IS NULL OR d.locked_until <= now())
RETURNING d.id, d.endpoint_id, d.event_id, d.company_id, d.attempts, d.window_started_at,
          e.url, e.include_raw, e.headers_encrypted, e.secret_encrypted,
          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_encrypted END
              AS previous_secret_encrypted,
          ev.type AS event_type, ev.phone_index, ev.data, ev.raw, ev.created_at AS event_created_at

-- record_delivered --
-- A 2xx for row $1 claimed by $2 (status code $3, response excerpt $4): the row is delivered and
-- the endpoint's failure streak ends (last_success_at written at most every 10 seconds).
WITH done AS (
    UPDATE webhook_deliveries SET
        status = 'delivered', delivered_at = now(), locked_by = NULL, locked_until = NULL,
        last_status_code = $3, last_error = NULL, last_response_excerpt = $4
    WHERE id = $1 AND locked_by = $2
    RETURNING endpoint_id
)
UPDATE webhook_endpoints e SET consecutive_failures = 0, failing_since = NULL, last_success_at = now()
FROM done
WHERE e.id = done.endpoint_id
  AND (e.consecutive_failures <> 0 OR e.failing_since IS NOT NULL OR e.last_success_at IS NULL
       OR e.last_success_at < now() - interval '10 seconds')

-- record_failed --
-- A failed attempt of row $1 claimed by $2 (status code $3, error $4, response excerpt $9): retry
-- after $5 seconds, or dead once the horizon $6 has passed since the window started (the last
-- attempt is scheduled exactly at the horizon; failing then makes the row dead). An endpoint
-- failing $7 times in a row for $8 seconds is disabled; just_disabled tells the worker to record
-- the warning (disabled_at = now() only in the transaction that disabled it).
WITH failed AS (
    UPDATE webhook_deliveries d SET
        status = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN 'dead' ELSE 'retrying' END,
        dead_at = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN now() END,
        next_attempt_at = CASE WHEN now() >= d.window_started_at + make_interval(secs => $6) THEN d.next_attempt_at
                               ELSE least(now() + make_interval(secs => $5),
                                          d.window_started_at + make_interval(secs => $6)) END,
        locked_by = NULL, locked_until = NULL,
        last_status_code = $3, last_error = $4, last_response_excerpt = $9
    WHERE d.id = $1 AND d.locked_by = $2
    RETURNING d.endpoint_id, d.status, d.next_attempt_at
), endpoint AS (
    UPDATE webhook_endpoints e SET
        consecutive_failures = e.consecutive_failures + 1,
        failing_since = coalesce(e.failing_since, now()),
        last_failure_at = now(),
        enabled = e.enabled AND NOT (
            e.consecutive_failures + 1 >= $7
            AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)),
        disabled_at = CASE WHEN e.enabled
                             AND e.consecutive_failures + 1 >= $7
                             AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)
                           THEN now() ELSE e.disabled_at END,
        disabled_reason = CASE WHEN e.enabled
                                 AND e.consecutive_failures + 1 >= $7
                                 AND coalesce(e.failing_since, now()) <= now() - make_interval(secs => $8)
                               THEN format('disabled automatically at %s: every delivery failed since %s '
                                           '(%s attempts in a row; last error: %s)',
                                           to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                           to_char(coalesce(e.failing_since, now()) AT TIME ZONE 'UTC',
                                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                           e.consecutive_failures + 1, left($4, 200))
                               ELSE e.disabled_reason END
    FROM failed
    WHERE e.id = failed.endpoint_id
    RETURNING e.id, e.company_id, e.url, e.consecutive_failures, e.failing_since,
              (NOT e.enabled AND e.disabled_at = now() AND e.disabled_reason IS NOT NULL) AS just_disabled
)
SELECT failed.status, failed.next_attempt_at, endpoint.id AS endpoint_id, endpoint.company_id, endpoint.url,
       endpoint.consecutive_failures, endpoint.failing_since, endpoint.just_disabled
FROM failed LEFT JOIN endpoint ON true

-- release_claims --
-- Give up the claims $1 of holder $2 (attempts cut short at shutdown) so other workers take them now.
UPDATE webhook_deliveries SET locked_by = NULL, locked_until = NULL
WHERE id = ANY ($1::bigint[]) AND locked_by = $2

-- release_stale_claims --
-- On start: rows this process name ($1) held when it died (kill -9) are free again at once.
UPDATE webhook_deliveries SET locked_by = NULL, locked_until = NULL
WHERE locked_by = $1 AND status IN ('pending', 'retrying')

-- next_due_at --
-- When the next waiting row becomes due (NULL: none is waiting for a later time).
SELECT min(next_attempt_at) FROM webhook_deliveries
WHERE status IN ('pending', 'retrying') AND next_attempt_at > now()

-- backlog_stats --
-- Gauges: rows waiting per state, and the lag = age of the oldest due, unclaimed row.
SELECT
    count(*) FILTER (WHERE d.status = 'pending') AS pending,
    count(*) FILTER (WHERE d.status = 'retrying') AS retrying,
    count(*) FILTER (WHERE d.locked_until > now()) AS in_flight,
    coalesce(extract(epoch FROM now() - min(d.next_attempt_at) FILTER (
        WHERE d.next_attempt_at <= now() AND (d.locked_until IS NULL OR d.locked_until <= now())
          AND e.enabled)), 0)::float8 AS lag_seconds
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.status IN ('pending', 'retrying')

-- count_dead_last_day --
-- Rows dead-lettered in the last 24 hours.
SELECT count(*) FROM webhook_deliveries WHERE status = 'dead' AND dead_at > now() - interval '1 day'

-- delete_finished_deliveries --
-- Delete up to $2 delivered or dead rows last changed more than $1 days ago.
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status IN ('delivered', 'dead') AND updated_at < now() - make_interval(days => $1)
    LIMIT $2)

-- check_listen_connection --
-- A round trip on the LISTEN connection: a silently dead TCP connection raises instead of waiting forever.
SELECT 1

-- stream_events_since --
-- Tenant events created after $1 (all companies), oldest first: the live stream's poll.
SELECT id, company_id, phone_index, type, data, created_at FROM tenant_events
WHERE created_at > $1 ORDER BY created_at, id LIMIT $2

-- stream_event_position --
-- Where an event id a client resumes from sits (its company and time).
SELECT company_id, created_at FROM tenant_events WHERE id = $1

-- stream_company_events_since --
-- A company's events from $2 on (resume after a reconnect), oldest first.
SELECT id, company_id, phone_index, type, data, created_at FROM tenant_events
WHERE company_id = $1 AND created_at >= $2 ORDER BY created_at, id LIMIT $3

-- stream_all_events_since --
-- Every company's events from $1 on (an operator resuming), oldest first.
SELECT id, company_id, phone_index, type, data, created_at FROM tenant_events
WHERE created_at >= $1 ORDER BY created_at, id LIMIT $2

-- stream_now --
-- The database's clock: where a new feed starts.
SELECT now()
