-- wanted_phones --
-- Every wwebjs phone with what its operator wants (running unless stopped), its breaker and
-- whether its company is active: what the session manager should be driving.
SELECT pc.company_id, pc.phone_index, coalesce(ws.desired_state, 'running') AS desired_state,
       ws.breaker_tripped_at, ws.breaker_reason, (c.status = 'active') AS company_active
FROM phone_configs pc
JOIN companies c ON c.id = pc.company_id
LEFT JOIN wwebjs_sessions ws ON ws.company_id = pc.company_id AND ws.phone_index = pc.phone_index
WHERE pc.process_name = 'wwebjs'
ORDER BY pc.company_id, pc.phone_index

-- session_auth --
-- A session's stored (encrypted) driver credentials and the driver that paired it.
SELECT driver, auth_state FROM wwebjs_sessions WHERE company_id = $1 AND phone_index = $2

-- save_auth --
-- Store a session's encrypted credentials after pairing or resuming; a missing device id or
-- number keeps the one already known.
-- A first pairing (no credentials before) sets paired_at; a resume keeps it.
INSERT INTO wwebjs_sessions (company_id, phone_index, driver, auth_state, device_id, phone_number, paired_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    driver = EXCLUDED.driver, auth_state = EXCLUDED.auth_state,
    paired_at = CASE WHEN wwebjs_sessions.auth_state IS NULL THEN now()
                     ELSE coalesce(wwebjs_sessions.paired_at, now()) END,
    device_id = coalesce(EXCLUDED.device_id, wwebjs_sessions.device_id),
    phone_number = coalesce(EXCLUDED.phone_number, wwebjs_sessions.phone_number)

-- clear_auth --
-- Forget a session's credentials (logged out: the next start shows a new QR).
UPDATE wwebjs_sessions SET auth_state = NULL, device_id = NULL WHERE company_id = $1 AND phone_index = $2

-- set_desired_state --
-- Record what the operator wants ($3 running|stopped, $4 why stopped); running also clears a
-- tripped breaker.
INSERT INTO wwebjs_sessions (company_id, phone_index, desired_state, stopped_reason)
VALUES ($1, $2, $3, $4)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    desired_state = EXCLUDED.desired_state, stopped_reason = EXCLUDED.stopped_reason,
    breaker_tripped_at = CASE WHEN EXCLUDED.desired_state = 'running' THEN NULL
                              ELSE wwebjs_sessions.breaker_tripped_at END,
    breaker_reason = CASE WHEN EXCLUDED.desired_state = 'running' THEN NULL ELSE wwebjs_sessions.breaker_reason END

-- trip_breaker --
-- Open a session's circuit breaker now, with the reason: it is not retried until an operator starts it.
INSERT INTO wwebjs_sessions (company_id, phone_index, breaker_tripped_at, breaker_reason)
VALUES ($1, $2, now(), $3)
ON CONFLICT (company_id, phone_index) DO UPDATE SET breaker_tripped_at = now(), breaker_reason = EXCLUDED.breaker_reason

-- mark_ready --
-- Note that a session became ready now (and its number, when known).
INSERT INTO wwebjs_sessions (company_id, phone_index, last_ready_at, phone_number) VALUES ($1, $2, now(), $3)
ON CONFLICT (company_id, phone_index) DO UPDATE SET
    last_ready_at = now(), phone_number = coalesce(EXCLUDED.phone_number, wwebjs_sessions.phone_number)

-- pending_commands --
-- Operator commands not carried out yet, oldest first (at most 200 per reconcile round).
SELECT id, company_id, phone_index, action, args, created_at FROM wwebjs_session_commands
WHERE state = 'pending' ORDER BY id LIMIT 200

-- finish_command --
-- Record a pending command's outcome ($2 done|failed, $3 its result) and who carried it out.
UPDATE wwebjs_session_commands SET state = $2, result = $3::jsonb, handled_by = $4, handled_at = now()
WHERE id = $1 AND state = 'pending'

-- insert_command --
-- Queue an operator command for whichever wwebjs process owns the session.
INSERT INTO wwebjs_session_commands (company_id, phone_index, action, args, requested_by)
VALUES ($1, $2, $3, $4::jsonb, $5)
RETURNING *

-- load_command --
-- One command of one session, as it stands now.
SELECT * FROM wwebjs_session_commands WHERE id = $1 AND company_id = $2 AND phone_index = $3

-- insert_inbound_message --
-- Store one inbound WhatsApp Web message, once per provider id and phone; no row when it is a duplicate.
-- $14 is WhatsApp's time of the message (when the contact sent it); delivered_at is when it reached us.
INSERT INTO messages (message_id, company_id, phone_index, direction, provider, connection_type, chat_id,
                      message_type, content, media_url, media_mime_type, media_filename, payload, raw, status,
                      external_id, context_message_id, source, provider_timestamp, delivered_at)
VALUES ($1, $2, $3, 'inbound', 'wwebjs', 'wwebjs', $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, 'delivered',
        $12, $13, 'wwebjs', $14, now())
ON CONFLICT (company_id, phone_index, external_id) WHERE direction = 'inbound' AND external_id IS NOT NULL
DO NOTHING
RETURNING id, message_id

-- outbound_for_ack --
-- The outbound message of this session a delivery ack names by its WhatsApp id (the latest, if resent).
SELECT id, status FROM messages
WHERE external_id = $1 AND company_id = $2 AND phone_index = $3 AND direction = 'outbound'
ORDER BY id DESC LIMIT 1

-- keep_member --
-- This process is alive for another lease period, with its capacity, load and whether it drains
-- (and the rows of processes gone for an hour are deleted on the way).
WITH gone AS (DELETE FROM wwebjs_members WHERE expires_at < now() - interval '1 hour')
INSERT INTO wwebjs_members (holder, process_name, host, capacity, sessions, draining, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
ON CONFLICT (holder) DO UPDATE SET
    capacity = EXCLUDED.capacity, sessions = EXCLUDED.sessions, draining = EXCLUDED.draining,
    seen_at = now(), expires_at = EXCLUDED.expires_at

-- live_members --
-- The wwebjs processes alive now (rows of the dead expire; they are deleted by the next keeper).
SELECT holder, process_name, host, capacity, sessions, draining
FROM wwebjs_members WHERE expires_at > now() ORDER BY started_at, holder

-- leave_members --
-- A process that stops is no member any more (its sessions are released with it).
DELETE FROM wwebjs_members WHERE holder = $1

-- claim_notification --
-- A notification (group change, poll vote) seen for the first time (no row: already an event).
INSERT INTO wwebjs_notifications (company_id, phone_index, notification_id, chat_id)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING notification_id

-- save_poll_vote --
-- A voter's current choice on a poll (replacing the earlier one).
INSERT INTO wwebjs_poll_votes (company_id, phone_index, poll_id, voter, selected)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (company_id, phone_index, poll_id, voter) DO UPDATE SET selected = excluded.selected, updated_at = now()

-- poll_votes --
-- Every voter's current choice on a poll.
SELECT voter, selected FROM wwebjs_poll_votes WHERE company_id = $1 AND phone_index = $2 AND poll_id = $3
ORDER BY voter

-- sent_poll --
-- The poll we sent with this provider id (its options are in the payload).
SELECT message_id, chat_id, payload FROM messages
WHERE company_id = $1 AND phone_index = $2 AND external_id = $3 AND direction = 'outbound' AND message_type = 'poll'
LIMIT 1

-- send_limits --
-- For a message about to go out on a phone ($1, $2) to chat $3: what the phone sent today (UTC),
-- how many chats it opened today (first message to a number that never wrote), whether this
-- message opens one, and when the number was paired. $3 NULL: no message at hand (opens_chat
-- then means nothing).
WITH today AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start)
SELECT
    (SELECT count(*) FROM messages m, today
     WHERE m.company_id = $1 AND m.phone_index = $2 AND m.direction = 'outbound' AND m.sent_at >= today.start
    ) AS sent_today,
    (SELECT count(DISTINCT m.chat_id) FROM messages m, today
     WHERE m.company_id = $1 AND m.phone_index = $2 AND m.direction = 'outbound' AND m.sent_at >= today.start
       AND NOT EXISTS (SELECT 1 FROM messages i WHERE i.company_id = $1 AND i.phone_index = $2
                       AND i.chat_id = m.chat_id AND i.direction = 'inbound')
       AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.company_id = $1 AND o.phone_index = $2
                       AND o.chat_id = m.chat_id AND o.direction = 'outbound' AND o.sent_at < today.start)
    ) AS new_chats_today,
    NOT EXISTS (SELECT 1 FROM messages x WHERE x.company_id = $1 AND x.phone_index = $2 AND x.chat_id = $3
                AND (x.direction = 'inbound' OR x.sent_at IS NOT NULL)) AS opens_chat,
    (SELECT paired_at FROM wwebjs_sessions WHERE company_id = $1 AND phone_index = $2) AS paired_at

-- antiban_overrides --
-- The anti-ban controls company $1 sets for phone $2 and as its defaults (phone_index NULL).
SELECT phone_index, simulate_typing, send_jitter_ms, daily_message_cap, daily_new_chat_cap, daily_cap_action,
       warmup_days, check_on_whatsapp
FROM wwebjs_antiban_settings
WHERE company_id = $1 AND (phone_index = $2 OR phone_index IS NULL)

-- company_antiban_overrides --
-- Every anti-ban row of company $1 (NULL: of every company): the defaults and each phone's.
SELECT company_id, phone_index, simulate_typing, send_jitter_ms, daily_message_cap, daily_new_chat_cap,
       daily_cap_action, warmup_days, check_on_whatsapp
FROM wwebjs_antiban_settings
WHERE $1::text IS NULL OR company_id = $1
ORDER BY company_id, phone_index NULLS FIRST

-- save_antiban_overrides --
-- Set the controls of company $1's phone $2 (NULL: the company's defaults); NULL columns inherit.
INSERT INTO wwebjs_antiban_settings (company_id, phone_index, simulate_typing, send_jitter_ms, daily_message_cap,
                                     daily_new_chat_cap, daily_cap_action, warmup_days, check_on_whatsapp)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (company_id, COALESCE(phone_index, -1)) DO UPDATE SET
    simulate_typing = EXCLUDED.simulate_typing, send_jitter_ms = EXCLUDED.send_jitter_ms,
    daily_message_cap = EXCLUDED.daily_message_cap, daily_new_chat_cap = EXCLUDED.daily_new_chat_cap,
    daily_cap_action = EXCLUDED.daily_cap_action, warmup_days = EXCLUDED.warmup_days,
    check_on_whatsapp = EXCLUDED.check_on_whatsapp, updated_at = now()

-- delete_antiban_overrides --
-- Forget the controls of company $1's phone $2 (NULL: the company's defaults): all inherit again.
DELETE FROM wwebjs_antiban_settings WHERE company_id = $1 AND phone_index IS NOT DISTINCT FROM $2::int
