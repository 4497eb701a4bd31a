-- 0013_media: stored media and the media state of messages.
--
-- A media object is one file a company has (received or uploaded): its bytes live in the
-- media store (filesystem under DATA_DIR, or S3) under the company and the bytes' sha256,
-- so the same file received twice is stored once; each object row keeps what is particular
-- to that arrival (file name, where it came from, when it expires under MEDIA_RETENTION_DAYS).
CREATE TABLE media_objects (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    mime_type   TEXT NOT NULL,
    filename    TEXT,
    origin      TEXT NOT NULL CHECK (origin IN ('inbound', 'upload')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ
);
CREATE INDEX idx_media_objects_blob ON media_objects(company_id, sha256);
CREATE INDEX idx_media_objects_expires ON media_objects(expires_at) WHERE expires_at IS NOT NULL;

-- An inbound media message names its media object before the download (the id is given
-- out in the message.inbound event); media_state says how far the download got.
ALTER TABLE messages
    ADD COLUMN media_object_id TEXT,
    ADD COLUMN media_state TEXT CHECK (media_state IN ('pending', 'stored', 'failed', 'expired')),
    ADD COLUMN media_error TEXT;
CREATE INDEX idx_messages_media_object ON messages(media_object_id) WHERE media_object_id IS NOT NULL;

-- The live event stream polls every company's newest events by time.
CREATE INDEX idx_tenant_events_created ON tenant_events(created_at);
