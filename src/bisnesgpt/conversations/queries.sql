-- list_chats --
-- A phone's chats, most recent first, after the cursor ($3 time, $4 row id), unread only when $5; $6 a page.
WITH last AS (
    SELECT DISTINCT ON (chat_id) chat_id, id, message_id, direction, status, message_type, content, created_at
    FROM messages WHERE company_id = $1 AND phone_index = $2
    ORDER BY chat_id, created_at DESC, id DESC
), chats AS (
    SELECT l.*,
           (SELECT count(*) FROM messages u WHERE u.company_id = $1 AND u.phone_index = $2 AND u.chat_id = l.chat_id
              AND u.direction = 'inbound' AND u.read_at IS NULL) AS unread_count,
           (SELECT coalesce(n.raw->'contact'->'profile'->>'name', n.raw->>'pushName')
              FROM messages n WHERE n.company_id = $1 AND n.phone_index = $2 AND n.chat_id = l.chat_id
               AND n.direction = 'inbound' ORDER BY n.created_at DESC, n.id DESC LIMIT 1) AS contact_name,
           CASE WHEN l.chat_id LIKE '%@lid' THEN l.chat_id
                ELSE (SELECT c.lid FROM contact_lids c WHERE c.company_id = $1 AND c.phone_index = $2
                        AND l.chat_id LIKE '%@c.us' AND c.number = split_part(l.chat_id, '@', 1)
                      ORDER BY c.learned_at DESC NULLS LAST LIMIT 1) END AS lid,
           CASE WHEN l.chat_id LIKE '%@c.us' THEN split_part(l.chat_id, '@', 1)
                WHEN l.chat_id LIKE '%@lid' THEN (SELECT c.number FROM contact_lids c WHERE c.company_id = $1
                                                    AND c.phone_index = $2 AND c.lid = l.chat_id) END AS number
    FROM last l
)
SELECT * FROM chats
WHERE ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
  AND (NOT $5 OR unread_count > 0)
ORDER BY created_at DESC, id DESC
LIMIT $6

-- chat_messages --
-- One chat's messages (both directions) before the cursor ($4 time, $5 row id), newest first; $6 a page.
SELECT id, message_id, direction, status, message_type, content, external_id, media_object_id, media_state,
       media_mime_type, media_filename, created_at, read_at
FROM messages
WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
ORDER BY created_at DESC, id DESC
LIMIT $6

-- mark_chat_read --
-- Every unread inbound message of the chat is read now; how many, and the newest one's provider id.
WITH marked AS (
    UPDATE messages SET read_at = now()
    WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3 AND direction = 'inbound' AND read_at IS NULL
    RETURNING external_id, created_at
)
SELECT count(*) AS marked,
       (SELECT external_id FROM marked ORDER BY created_at DESC LIMIT 1) AS newest_external_id
FROM marked

-- last_inbound --
-- The newest inbound message of the chat (its provider id), for a typing indicator or a read receipt.
SELECT external_id FROM messages
WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3 AND direction = 'inbound' AND external_id IS NOT NULL
ORDER BY created_at DESC, id DESC LIMIT 1

-- list_contacts --
-- Everyone who wrote to the phone (or was written to; by number or by LID), most recently seen first, after the cursor ($3 time, $4 chat).
WITH seen AS (
    SELECT chat_id, min(created_at) AS first_seen, max(created_at) AS last_seen
    FROM messages WHERE company_id = $1 AND phone_index = $2 AND (chat_id LIKE '%@c.us' OR chat_id LIKE '%@lid')
    GROUP BY chat_id
)
SELECT s.chat_id, s.first_seen, s.last_seen,
       (SELECT coalesce(n.raw->'contact'->'profile'->>'name', n.raw->>'pushName')
          FROM messages n WHERE n.company_id = $1 AND n.phone_index = $2 AND n.chat_id = s.chat_id
           AND n.direction = 'inbound' ORDER BY n.created_at DESC LIMIT 1) AS profile_name,
       CASE WHEN s.chat_id LIKE '%@lid' THEN s.chat_id
            ELSE (SELECT c.lid FROM contact_lids c WHERE c.company_id = $1 AND c.phone_index = $2
                    AND c.number = split_part(s.chat_id, '@', 1)
                  ORDER BY c.learned_at DESC NULLS LAST LIMIT 1) END AS lid,
       CASE WHEN s.chat_id LIKE '%@c.us' THEN split_part(s.chat_id, '@', 1)
            ELSE (SELECT c.number FROM contact_lids c WHERE c.company_id = $1 AND c.phone_index = $2
                    AND c.lid = s.chat_id) END AS number
FROM seen s
WHERE ($3::timestamptz IS NULL OR (s.last_seen, s.chat_id) < ($3, $4))
ORDER BY s.last_seen DESC, s.chat_id DESC
LIMIT $5

-- unread_inbound --
-- The chat's unread inbound messages with a provider id (and their author), oldest first, at most $4: what a read receipt covers.
SELECT external_id, payload->>'from' AS sender FROM messages
WHERE company_id = $1 AND phone_index = $2 AND chat_id = $3 AND direction = 'inbound' AND read_at IS NULL
  AND external_id IS NOT NULL
ORDER BY created_at, id
LIMIT $4
