"""The sandbox network's durable records (SQLite): linked devices, every message, connections.

Everything a test or the chaos checker asks afterwards lives here, written as it happens,
so it outlives any client (a ``kill -9`` of wwebjs) and a restart of the sandbox itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
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
"""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Records:
    """Synchronous and small: one process, one event loop, short statements, commit each write."""

    def __init__(self, path: Path | None) -> None:
        target = str(path) if path is not None else ":memory:"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # --- devices ----------------------------------------------------------------------------------

    def link_device(self, session: str, device_id: str, secret: str, phone: str, push_name: str | None) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO devices (session, device_id, secret_hash, phone, push_name, paired_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (session, device_id, secret_hash(secret), phone, push_name, time.time()))

    def device(self, session: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM devices WHERE session = ?", (session,)).fetchone()
        return dict(row) if row else None

    def check_device(self, session: str, device_id: str, secret: str) -> dict[str, Any] | None:
        found = self.device(session)
        if (found is None or found["logged_out_at"] is not None or found["device_id"] != device_id
                or found["secret_hash"] != secret_hash(secret)):
            return None
        return found

    def log_out_device(self, session: str, reason: str) -> bool:
        cursor = self.conn.execute(
            "UPDATE devices SET logged_out_at = ?, logout_reason = ? WHERE session = ? AND logged_out_at IS NULL",
            (time.time(), reason, session))
        return cursor.rowcount > 0

    # --- messages ---------------------------------------------------------------------------------

    def record_outbound(self, session: str, message_id: str, chat: str, kind: str, body: dict[str, Any],
                        connection_id: int) -> bool:
        """True if new; a known id counts as a duplicate receipt (delivered once, counted twice)."""
        now = time.time()
        cursor = self.conn.execute(
            "UPDATE messages SET received_count = received_count + 1, last_at = ? "
            "WHERE session = ? AND id = ? AND direction = 'out'", (now, session, message_id))
        if cursor.rowcount:
            return False
        self.conn.execute(
            "INSERT INTO messages (session, id, direction, chat, kind, body, first_at, last_at, connection_id) "
            "VALUES (?, ?, 'out', ?, ?, ?, ?, ?, ?)",
            (session, message_id, chat, kind, json.dumps(body), now, now, connection_id))
        return True

    def record_inbound(self, session: str, message_id: str, chat: str, kind: str, body: dict[str, Any]) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT INTO messages (session, id, direction, chat, kind, body, first_at, last_at) "
            "VALUES (?, ?, 'in', ?, ?, ?, ?, ?)", (session, message_id, chat, kind, json.dumps(body), now, now))

    def message(self, session: str, message_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM messages WHERE session = ? AND id = ?", (session, message_id)).fetchone()
        return self._message(row) if row else None

    def set_ack(self, session: str, message_id: str, level: int) -> bool:
        cursor = self.conn.execute("UPDATE messages SET ack = ? WHERE session = ? AND id = ? AND ack < ?",
                                   (level, session, message_id, level))
        return cursor.rowcount > 0

    def confirm_ack(self, session: str, message_id: str, level: int) -> None:
        self.conn.execute("UPDATE messages SET ack_confirmed = max(ack_confirmed, ?) WHERE session = ? AND id = ?",
                          (level, session, message_id))

    def unconfirmed_acks(self, session: str) -> list[tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT id, ack FROM messages WHERE session = ? AND direction = 'out' AND ack > ack_confirmed "
            "ORDER BY first_at", (session,)).fetchall()
        return [(r["id"], r["ack"]) for r in rows]

    def pending_inbound(self, session: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE session = ? AND direction = 'in' AND delivered = 0 ORDER BY first_at",
            (session,)).fetchall()
        return [self._message(r) for r in rows]

    def count_push(self, session: str, message_id: str) -> None:
        self.conn.execute("UPDATE messages SET delivery_count = delivery_count + 1 WHERE session = ? AND id = ?",
                          (session, message_id))

    def confirm_inbound(self, session: str, message_id: str) -> None:
        self.conn.execute("UPDATE messages SET delivered = 1 WHERE session = ? AND id = ? AND direction = 'in'",
                          (session, message_id))

    def annotate(self, session: str, target_id: str, change: dict[str, Any]) -> bool:
        """Edits, revokes and reactions leave their mark on the message they refer to."""
        row = self.conn.execute("SELECT body FROM messages WHERE session = ? AND id = ?",
                                (session, target_id)).fetchone()
        if row is None:
            return False
        body = json.loads(row["body"])
        body.setdefault("changes", []).append(change)
        if change.get("kind") == "delete":
            body["revoked"] = True
        elif change.get("kind") == "edit":
            body["editedText"] = change.get("text")
        elif change.get("kind") == "reaction":
            body["reaction"] = change.get("text") or None
        self.conn.execute("UPDATE messages SET body = ? WHERE session = ? AND id = ?",
                          (json.dumps(body), session, target_id))
        return True

    def messages(self, *, session: str | None = None, direction: str | None = None,
                 chat: str | None = None) -> list[dict[str, Any]]:
        clauses, args = [], []
        for column, value in (("session", session), ("direction", direction), ("chat", chat)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn.execute(f"SELECT * FROM messages{where} ORDER BY first_at", args).fetchall()
        return [self._message(r) for r in rows]

    @staticmethod
    def _message(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        data["body"] = json.loads(data["body"])
        return data

    # --- connections ------------------------------------------------------------------------------

    def open_connection(self, client: dict[str, Any], remote: str | None) -> int:
        cursor = self.conn.execute("INSERT INTO connections (client, remote, opened_at) VALUES (?, ?, ?)",
                                   (json.dumps(client), remote, time.time()))
        return int(cursor.lastrowid or 0)

    def bind_connection(self, connection_id: int, session: str, client: dict[str, Any], overlapped: bool) -> None:
        self.conn.execute("UPDATE connections SET session = ?, client = ?, overlapped = ? WHERE id = ?",
                          (session, json.dumps(client), int(overlapped), connection_id))

    def close_connection(self, connection_id: int, reason: str) -> None:
        self.conn.execute("UPDATE connections SET closed_at = ?, close_reason = ? WHERE id = ? AND closed_at IS NULL",
                          (time.time(), reason, connection_id))

    def connections(self, session: str | None = None) -> list[dict[str, Any]]:
        if session is None:
            rows = self.conn.execute("SELECT * FROM connections ORDER BY id").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM connections WHERE session = ? ORDER BY id", (session,)).fetchall()
        out = []
        for row in rows:
            data = dict(row)
            data["client"] = json.loads(data["client"])
            out.append(data)
        return out

    def close_dangling(self) -> None:
        """After a restart of the sandbox itself, no connection from before is open."""
        self.conn.execute("UPDATE connections SET closed_at = ?, close_reason = 'sandbox restarted' "
                          "WHERE closed_at IS NULL", (time.time(),))

    # --- media ------------------------------------------------------------------------------------

    def add_media(self, handle: str, sha256: str, size: int, mime: str, name: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO media (handle, sha256, size, mime, name) VALUES (?, ?, ?, ?, ?)",
                          (handle, sha256, size, mime, name))

    def media(self, handle: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM media WHERE handle = ?", (handle,)).fetchone()
        return dict(row) if row else None
