-- create_tables --
-- The network's record (idempotent: run at every start, the file may already hold records).
CREATE TABLE IF NOT EXISTS devices (
    session       TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    phone         TEXT NOT NULL,
    push_name     TEXT,
    paired_at     REAL NOT NULL,
    logged_out_at REAL,
    logout_reason TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    session          TEXT NOT NULL,
    id               TEXT NOT NULL,
    direction        TEXT NOT NULL,          -- out (sent by a client) | in (injected inbound)
    chat             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    body             TEXT NOT NULL,          -- JSON
    received_count   INTEGER NOT NULL DEFAULT 1,
    first_at         REAL NOT NULL,
    last_at          REAL NOT NULL,
    ack              INTEGER NOT NULL DEFAULT 0,   -- 0 none, 1 server, 2 device, 3 read
    ack_confirmed    INTEGER NOT NULL DEFAULT 0,   -- highest ack level the client confirmed
    delivered        INTEGER NOT NULL DEFAULT 0,   -- inbound: the client confirmed storing it
    delivery_count   INTEGER NOT NULL DEFAULT 0,   -- inbound: how often it was pushed
    connection_id    INTEGER,
    PRIMARY KEY (session, id)
);
CREATE INDEX IF NOT EXISTS idx_messages_session_first ON messages(session, first_at);
CREATE TABLE IF NOT EXISTS receipts (     -- every arrival of a sent message, and the socket it came on
    session        TEXT NOT NULL,
    id             TEXT NOT NULL,
    connection_id  INTEGER NOT NULL,
    at             REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_receipts_session_at ON receipts(session, at);
CREATE TABLE IF NOT EXISTS connections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    session       TEXT,
    client        TEXT NOT NULL,            -- JSON: process, pid, host, holder
    remote        TEXT,
    opened_at     REAL NOT NULL,
    closed_at     REAL,
    close_reason  TEXT,
    overlapped    INTEGER NOT NULL DEFAULT 0 -- another connection of the session was still open
);
CREATE TABLE IF NOT EXISTS media (
    handle  TEXT PRIMARY KEY,
    sha256  TEXT NOT NULL,
    size    INTEGER NOT NULL,
    mime    TEXT NOT NULL,
    name    TEXT
);
CREATE TABLE IF NOT EXISTS presence (
    session  TEXT NOT NULL,
    chat     TEXT NOT NULL,
    state    TEXT NOT NULL,              -- composing | recording | paused
    at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS read_receipts (
    session     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    id          TEXT PRIMARY KEY,           -- <digits>-<digits>@g.us
    body        TEXT NOT NULL,              -- JSON: subject, description, owner, participants, settings, invite
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

-- link_device --
-- A phone linked the session's device (a new link replaces the previous one).
INSERT OR REPLACE INTO devices (session, device_id, secret_hash, phone, push_name, paired_at)
VALUES (:session, :device_id, :secret_hash, :phone, :push_name, :paired_at)

-- device --
-- The session's linked device, logged out or not.
SELECT * FROM devices WHERE session = :session

-- log_out_device --
-- Void the session's device credentials, once.
UPDATE devices SET logged_out_at = :at, logout_reason = :reason
WHERE session = :session AND logged_out_at IS NULL

-- count_outbound_again --
-- A message id the session already sent arrived again: count the receipt (no row: it is new).
UPDATE messages SET received_count = received_count + 1, last_at = :at
WHERE session = :session AND id = :id AND direction = 'out'

-- insert_message --
-- A new message, sent by a client (out) or injected for it (in).
INSERT INTO messages (session, id, direction, chat, kind, body, first_at, last_at, connection_id)
VALUES (:session, :id, :direction, :chat, :kind, :body, :at, :at, :connection_id)

-- message --
-- One message of a session by id.
SELECT * FROM messages WHERE session = :session AND id = :id

-- raise_ack --
-- The network's ack level of a sent message goes up, never down (no row: it already was there).
UPDATE messages SET ack = :level WHERE session = :session AND id = :id AND ack < :level

-- confirm_ack --
-- The client applied this ack level; acks at or below it are not replayed.
UPDATE messages SET ack_confirmed = max(ack_confirmed, :level) WHERE session = :session AND id = :id

-- unconfirmed_acks --
-- Sent messages whose ack level the client has not confirmed yet, oldest first (replayed on ready).
SELECT id, ack FROM messages
WHERE session = :session AND direction = 'out' AND ack > ack_confirmed
ORDER BY first_at

-- pending_inbound --
-- Inbound messages the client has not confirmed storing, oldest first (pushed again on ready).
SELECT * FROM messages WHERE session = :session AND direction = 'in' AND delivered = 0 ORDER BY first_at

-- count_push --
-- An inbound message was pushed to the client once more.
UPDATE messages SET delivery_count = delivery_count + 1 WHERE session = :session AND id = :id

-- confirm_inbound --
-- The client stored an inbound message: stop pushing it.
UPDATE messages SET delivered = 1 WHERE session = :session AND id = :id AND direction = 'in'

-- message_body --
-- The JSON body of one message (to annotate it).
SELECT body FROM messages WHERE session = :session AND id = :id

-- set_message_body --
-- Replace a message's JSON body (an edit, revoke or reaction marked on it).
UPDATE messages SET body = :body WHERE session = :session AND id = :id

-- session_messages --
-- One session's messages, oldest first, of one direction and/or chat when given.
SELECT * FROM messages
WHERE session = :session AND (:direction IS NULL OR direction = :direction) AND (:chat IS NULL OR chat = :chat)
ORDER BY first_at

-- all_messages --
-- Every session's messages, oldest first, of one direction and/or chat when given.
SELECT * FROM messages
WHERE (:direction IS NULL OR direction = :direction) AND (:chat IS NULL OR chat = :chat)
ORDER BY first_at

-- open_connection --
-- A socket connected; it names its session in its hello.
INSERT INTO connections (client, remote, opened_at) VALUES (:client, :remote, :at)

-- bind_connection --
-- The hello named the session and the client; overlapped: another client's connection was still open.
UPDATE connections SET session = :session, client = :client, overlapped = :overlapped WHERE id = :id

-- close_connection --
-- A connection ended (the first reason given stays).
UPDATE connections SET closed_at = :at, close_reason = :reason WHERE id = :id AND closed_at IS NULL

-- all_connections --
-- Every connection ever made, in order.
SELECT * FROM connections ORDER BY id

-- add_receipt --
-- A sent message arrived (first time or again) on this connection.
INSERT INTO receipts (session, id, connection_id, at) VALUES (:session, :id, :connection_id, :at)

-- receipts --
-- Every arrival of a sent message in order, with the client process that drove it.
SELECT r.session, r.id, r.at, r.connection_id, c.client FROM receipts r
LEFT JOIN connections c ON c.id = r.connection_id
WHERE (:session IS NULL OR r.session = :session)
ORDER BY r.at, r.rowid

-- session_connections --
-- The connections of one session, in order.
SELECT * FROM connections WHERE session = :session ORDER BY id

-- close_dangling --
-- After a restart of the sandbox itself, no connection from before is open.
UPDATE connections SET closed_at = :at, close_reason = 'sandbox restarted' WHERE closed_at IS NULL

-- add_media --
-- An upload to the media server (a handle uploaded again is replaced).
INSERT OR REPLACE INTO media (handle, sha256, size, mime, name) VALUES (:handle, :sha256, :size, :mime, :name)

-- media --
-- One upload by handle.
SELECT * FROM media WHERE handle = :handle

-- known_sessions --
-- Every session with a device, a message or a connection on record.
SELECT session FROM devices
UNION SELECT session FROM messages
UNION SELECT session FROM connections WHERE session IS NOT NULL

-- save_group --
-- Create or replace a group (its whole state as JSON).
INSERT INTO groups (id, body, created_at, updated_at) VALUES (:id, :body, :at, :at)
ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at

-- group --
-- One group by id.
SELECT * FROM groups WHERE id = :id

-- all_groups --
-- Every group, oldest first.
SELECT * FROM groups ORDER BY created_at, id

-- linked_phones --
-- The sessions whose device is linked now, with their phone numbers.
SELECT session, phone FROM devices WHERE logged_out_at IS NULL ORDER BY session

-- record_presence --
-- A client showed (or stopped showing) "typing…" in a chat.
INSERT INTO presence (session, chat, state, at) VALUES (:session, :chat, :state, :at)

-- presence --
-- A session's presence updates, oldest first.
SELECT * FROM presence WHERE session = :session ORDER BY at, rowid

-- record_read --
-- A client sent a read receipt for a message it received in a chat.
INSERT INTO read_receipts (session, chat, message_id, at) VALUES (:session, :chat, :message_id, :at)

-- read_receipts --
-- A session's read receipts, oldest first.
SELECT * FROM read_receipts WHERE session = :session ORDER BY at, rowid
