-- phone_sessions --
-- Configured phones ($1 company or all, $2 phone or all) with their engine's status, the
-- WhatsApp-Web session state, the process holding the session's lease now (if any) and the
-- phone's last message in or out (its conversations' latest).
SELECT pc.company_id, c.name AS company_name, pc.phone_index,
       coalesce(pc.connection_type, 'wwebjs') AS connection_type, pc.status AS config_status,
       pc.display_phone_number, pc.meta_phone_number_id, pc.meta_waba_id, pc.dialog360_channel_id,
       pc.ordered_sends, pc.settings, ps.status, ps.phone_number, ps.last_seen, ps.metadata, ps.updated_at AS status_updated_at,
       ws.desired_state, ws.breaker_tripped_at, ws.breaker_reason, ws.last_ready_at,
       (ws.auth_state IS NOT NULL) AS paired, pl.holder AS owner,
       (SELECT max(greatest(cs.last_inbound_at, cs.last_outbound_at)) FROM conversation_sessions cs
        WHERE cs.company_id = pc.company_id AND cs.phone_index = pc.phone_index) AS last_activity
FROM phone_configs pc
JOIN companies c ON c.id = pc.company_id
LEFT JOIN phone_status ps ON ps.company_id = pc.company_id AND ps.phone_index = pc.phone_index
LEFT JOIN wwebjs_sessions ws ON ws.company_id = pc.company_id AND ws.phone_index = pc.phone_index
LEFT JOIN process_leases pl ON pl.name = 'wwebjs:session:' || pc.company_id || ':' || pc.phone_index
                           AND pl.expires_at > now()
WHERE ($1::text IS NULL OR pc.company_id = $1) AND ($2::int IS NULL OR pc.phone_index = $2)
ORDER BY pc.company_id, pc.phone_index

-- company_exists --
-- 1 when the company $1 exists (NULL otherwise).
SELECT 1 FROM companies WHERE id = $1

-- record_audit --
-- One change made by an authenticated caller (see migration 0019).
INSERT INTO audit_log (actor_kind, actor_company_id, key_id, via, client_address, method, route, path,
                       target_company_id, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)

-- audit_entries --
-- The newest entries first, before id $3 (a cursor; NULL: from the newest), at most $4: a
-- company ($1) sees what its own keys did and what was done to it; NULL: every company,
-- or only what touched company $2 when given.
SELECT id, at, actor_kind, actor_company_id, key_id, via, client_address, method, route, path,
       target_company_id, status
FROM audit_log
WHERE ($1::text IS NULL OR actor_company_id = $1 OR target_company_id = $1)
  AND ($2::text IS NULL OR actor_company_id = $2 OR target_company_id = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4
