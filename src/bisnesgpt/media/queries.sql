-- lock_blob --
-- Serialise storing and deleting the bytes of one (company, sha256) until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('media:' || $1 || ':' || $2, 0))

-- insert_media_object --
-- A media object whose bytes were just stored, expiring $8 seconds from now (NULL: never).
INSERT INTO media_objects (id, company_id, sha256, size_bytes, mime_type, filename, origin, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8))
RETURNING *

-- get_media_object --
-- One media object of a company (none for another company's id).
SELECT * FROM media_objects WHERE id = $1 AND company_id = $2

-- get_media_object_any_company --
-- One media object by id alone (signed URLs: the signature names the company).
SELECT * FROM media_objects WHERE id = $1

-- delete_expired_media_objects --
-- Up to $1 media objects past their expiry, deleted; their ids, companies and hashes.
DELETE FROM media_objects WHERE id IN (
    SELECT id FROM media_objects WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, company_id, sha256

-- blob_in_use --
-- Whether any media object still has the bytes of (company, sha256).
SELECT EXISTS (SELECT 1 FROM media_objects WHERE company_id = $1 AND sha256 = $2)

-- mark_messages_media_expired --
-- Messages whose media objects were deleted by retention.
UPDATE messages SET media_state = 'expired'
WHERE media_object_id = ANY($1::text[]) AND media_state IS DISTINCT FROM 'expired'

-- begin_media_download --
-- An inbound message's media is to be downloaded into media object $2.
UPDATE messages SET media_object_id = $2, media_state = 'pending', media_error = NULL WHERE id = $1

-- media_message --
-- The message a media download is for, with its phone (none when deleted).
SELECT m.id, m.message_id, m.company_id, m.phone_index, m.chat_id, m.external_id, m.provider, m.message_type,
       m.media_id, m.media_mime_type, m.media_filename, m.media_object_id, m.media_state, m.media_error
FROM messages m WHERE m.id = $1

-- finish_media_download --
-- The download ended: stored, or failed with a reason (only while it was pending).
UPDATE messages SET media_state = $2, media_error = $3
WHERE id = $1 AND media_state = 'pending'
RETURNING id

-- pending_download_of --
-- An inbound message (by provider id) whose media download has not ended: its row id and media object id.
SELECT id, media_object_id FROM messages
WHERE company_id = $1 AND phone_index = $2 AND external_id = $3 AND direction = 'inbound'
  AND media_state = 'pending'

-- inbound_exists --
-- Whether an inbound message with this provider id is already stored for the phone.
SELECT EXISTS (SELECT 1 FROM messages WHERE company_id = $1 AND phone_index = $2 AND external_id = $3
               AND direction = 'inbound') AS found

-- set_message_media --
-- A message's media object and how its download ended (media fetched before the message was stored).
UPDATE messages SET media_object_id = $2, media_state = $3, media_error = $4 WHERE id = $1
