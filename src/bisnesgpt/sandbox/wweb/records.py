"""The sandbox network's durable records (SQLite): linked devices, every message, connections.

Everything a test or the chaos checker asks afterwards lives here, written as it happens,
so it outlives any client (a ``kill -9`` of wwebjs) and a restart of the sandbox itself.
The SQL is in ``queries.sql``; rows come back as the ``TypedDict``s below, whose keys are
the tables' columns (JSON columns decoded), which is also how the admin API shows them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Literal, TypedDict, cast

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.sandbox.wweb")

Direction = Literal["out", "in"]
ChangeKind = Literal["reaction", "edit", "delete"]


class DeviceRow(TypedDict):
    """The device linked to a session (credentials as a hash; logged out once voided)."""

    session: str
    device_id: str
    secret_hash: str
    phone: str
    push_name: str | None
    paired_at: float
    logged_out_at: float | None
    logout_reason: str | None


class MessageRow(TypedDict):
    """A message as the network saw it: how often it arrived, its ack level, what the client confirmed."""

    session: str
    id: str
    direction: Direction
    chat: str
    kind: str
    body: JsonObject
    received_count: int
    first_at: float
    last_at: float
    ack: int
    ack_confirmed: int
    delivered: int
    delivery_count: int
    connection_id: int | None


class ConnectionRow(TypedDict):
    """One socket from hello to close (``overlapped``: another client's connection was still open)."""

    id: int
    session: str | None
    client: JsonObject
    remote: str | None
    opened_at: float
    closed_at: float | None
    close_reason: str | None
    overlapped: int


class ReceiptRow(TypedDict):
    """One arrival of a sent message: on which connection, from which client process."""

    session: str
    id: str
    at: float
    connection_id: int
    client: JsonObject | None


class MediaRow(TypedDict):
    """An upload to the network's media server."""

    handle: str
    sha256: str
    size: int
    mime: str
    name: str | None


class GroupRow(TypedDict):
    """A group on the network (``body``: subject, description, owner, participants by number → role,
    announce, locked, invite code)."""

    id: str
    body: JsonObject
    created_at: float
    updated_at: float


def secret_hash(secret: str) -> str:
    """How a device secret is kept (never the secret itself)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _message(row: sqlite3.Row) -> MessageRow:
    data = dict(row)
    data["body"] = json.loads(data["body"])
    return cast(MessageRow, data)


def _group(row: sqlite3.Row) -> GroupRow:
    data = dict(row)
    data["body"] = json.loads(data["body"])
    return cast(GroupRow, data)


def _connection(row: sqlite3.Row) -> ConnectionRow:
    data = dict(row)
    data["client"] = json.loads(data["client"])
    return cast(ConnectionRow, data)


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
        self.conn.executescript(SQL.create_tables)

    def close(self) -> None:
        """Close the database (the server does, on its way out)."""
        self.conn.close()

    # --- devices ----------------------------------------------------------------------------------

    def link_device(self, session: str, device_id: str, secret: str, phone: str, push_name: str | None) -> None:
        """Record the session's newly linked device."""
        self.conn.execute(SQL.link_device, {"session": session, "device_id": device_id,
                                            "secret_hash": secret_hash(secret), "phone": phone,
                                            "push_name": push_name, "paired_at": time.time()})

    def device(self, session: str) -> DeviceRow | None:
        """The session's device, logged out or not."""
        row = self.conn.execute(SQL.device, {"session": session}).fetchone()
        return cast(DeviceRow, dict(row)) if row else None

    def check_device(self, session: str, device_id: str, secret: str) -> DeviceRow | None:
        """The device if these stored credentials still log it in (linked, not logged out)."""
        found = self.device(session)
        if (found is None or found["logged_out_at"] is not None or found["device_id"] != device_id
                or found["secret_hash"] != secret_hash(secret)):
            return None
        return found

    def log_out_device(self, session: str, reason: str) -> bool:
        """Void the device's credentials; False if there was none to void."""
        cursor = self.conn.execute(SQL.log_out_device, {"at": time.time(), "reason": reason, "session": session})
        return cursor.rowcount > 0

    # --- messages ---------------------------------------------------------------------------------

    def record_outbound(self, session: str, message_id: str, chat: str, kind: str, body: JsonObject,
                        connection_id: int) -> bool:
        """True if new; a known id counts as a duplicate receipt (delivered once, counted twice)."""
        now = time.time()
        self.conn.execute(SQL.add_receipt, {"session": session, "id": message_id, "connection_id": connection_id,
                                            "at": now})
        cursor = self.conn.execute(SQL.count_outbound_again, {"at": now, "session": session, "id": message_id})
        if cursor.rowcount:
            return False
        self._insert(session, message_id, "out", chat, kind, body, now, connection_id)
        return True

    def record_inbound(self, session: str, message_id: str, chat: str, kind: str, body: JsonObject) -> None:
        """Record a message injected for the session (pushed now or when it is next ready)."""
        self._insert(session, message_id, "in", chat, kind, body, time.time(), None)

    def _insert(self, session: str, message_id: str, direction: Direction, chat: str, kind: str, body: JsonObject,
                at: float, connection_id: int | None) -> None:
        self.conn.execute(SQL.insert_message, {"session": session, "id": message_id, "direction": direction,
                                               "chat": chat, "kind": kind, "body": json.dumps(body), "at": at,
                                               "connection_id": connection_id})

    def message(self, session: str, message_id: str) -> MessageRow | None:
        """One message of the session."""
        row = self.conn.execute(SQL.message, {"session": session, "id": message_id}).fetchone()
        return _message(row) if row else None

    def set_ack(self, session: str, message_id: str, level: int) -> bool:
        """Raise a sent message's ack level; False if it was already there (nothing to push)."""
        cursor = self.conn.execute(SQL.raise_ack, {"level": level, "session": session, "id": message_id})
        return cursor.rowcount > 0

    def confirm_ack(self, session: str, message_id: str, level: int) -> None:
        """The client applied the ack up to ``level``."""
        self.conn.execute(SQL.confirm_ack, {"level": level, "session": session, "id": message_id})

    def unconfirmed_acks(self, session: str) -> list[tuple[str, int]]:
        """(message id, ack level) the client has not confirmed, oldest first."""
        rows = self.conn.execute(SQL.unconfirmed_acks, {"session": session}).fetchall()
        return [(r["id"], r["ack"]) for r in rows]

    def pending_inbound(self, session: str) -> list[MessageRow]:
        """Inbound messages the client has not confirmed storing, oldest first."""
        rows = self.conn.execute(SQL.pending_inbound, {"session": session}).fetchall()
        return [_message(r) for r in rows]

    def count_push(self, session: str, message_id: str) -> None:
        """An inbound message was pushed once more."""
        self.conn.execute(SQL.count_push, {"session": session, "id": message_id})

    def confirm_inbound(self, session: str, message_id: str) -> None:
        """The client stored the inbound message."""
        self.conn.execute(SQL.confirm_inbound, {"session": session, "id": message_id})

    def annotate(self, session: str, target_id: str, kind: ChangeKind, change_id: str, text: JsonValue) -> bool:
        """Edits, revokes and reactions leave their mark on the message they refer to."""
        row = self.conn.execute(SQL.message_body, {"session": session, "id": target_id}).fetchone()
        if row is None:
            return False
        body = json.loads(row["body"])
        body.setdefault("changes", []).append({"kind": kind, "id": change_id, "text": text, "at": time.time()})
        if kind == "delete":
            body["revoked"] = True
        elif kind == "edit":
            body["editedText"] = text
        else:
            body["reaction"] = text or None
        self.conn.execute(SQL.set_message_body, {"body": json.dumps(body), "session": session, "id": target_id})
        return True

    def record_vote(self, session: str, poll_id: str, voter: str, selected: list[str]) -> None:
        """A voter's current choice on a poll the session sent (kept in the poll's body, with the tallies)."""
        row = self.conn.execute(SQL.message_body, {"session": session, "id": poll_id}).fetchone()
        if row is None:
            return
        body = json.loads(row["body"])
        votes = body.setdefault("votes", {})
        votes[voter] = selected
        options = body.get("poll", {}).get("options", [])
        body["tallies"] = {o: sum(o in chosen for chosen in votes.values()) for o in options}
        self.conn.execute(SQL.set_message_body, {"body": json.dumps(body), "session": session, "id": poll_id})

    def messages(self, *, session: str | None = None, direction: str | None = None,
                 chat: str | None = None) -> list[MessageRow]:
        """Messages oldest first, of one session, direction and/or chat when given."""
        query = SQL.all_messages if session is None else SQL.session_messages
        rows = self.conn.execute(query, {"session": session, "direction": direction, "chat": chat}).fetchall()
        return [_message(r) for r in rows]

    # --- connections ------------------------------------------------------------------------------

    def open_connection(self, client: JsonObject, remote: str | None) -> int:
        """Record a new socket; its id."""
        cursor = self.conn.execute(SQL.open_connection, {"client": json.dumps(client), "remote": remote,
                                                         "at": time.time()})
        return int(cursor.lastrowid or 0)

    def bind_connection(self, connection_id: int, session: str, client: JsonObject, overlapped: bool) -> None:
        """The socket's hello named its session and client."""
        self.conn.execute(SQL.bind_connection, {"session": session, "client": json.dumps(client),
                                                "overlapped": int(overlapped), "id": connection_id})

    def close_connection(self, connection_id: int, reason: str) -> None:
        """The socket ended, for ``reason`` (the first reason recorded stays)."""
        self.conn.execute(SQL.close_connection, {"at": time.time(), "reason": reason, "id": connection_id})

    def connections(self, session: str | None = None) -> list[ConnectionRow]:
        """Connections in order: all, or one session's."""
        if session is None:
            rows = self.conn.execute(SQL.all_connections).fetchall()
        else:
            rows = self.conn.execute(SQL.session_connections, {"session": session}).fetchall()
        return [_connection(r) for r in rows]

    def receipts(self, session: str | None = None) -> list[ReceiptRow]:
        """Every arrival of a sent message, oldest first, with the client that drove it."""
        rows = self.conn.execute(SQL.receipts, {"session": session}).fetchall()
        return [cast(ReceiptRow, {**dict(r), "client": json.loads(r["client"]) if r["client"] else None})
                for r in rows]

    def close_dangling(self) -> None:
        """After a restart of the sandbox itself, no connection from before is open."""
        self.conn.execute(SQL.close_dangling, {"at": time.time()})

    def sessions(self) -> set[str]:
        """Every session on record (a device, a message or a connection)."""
        return {r["session"] for r in self.conn.execute(SQL.known_sessions)}

    # --- presence ---------------------------------------------------------------------------------

    def record_presence(self, session: str, chat: str, state: str) -> None:
        """A client showed (``composing``) or stopped showing (``paused``) "typing…" in ``chat``."""
        self.conn.execute(SQL.record_presence, {"session": session, "chat": chat, "state": state, "at": time.time()})

    def presence(self, session: str) -> list[JsonObject]:
        """The session's presence updates, oldest first."""
        return [dict(r) for r in self.conn.execute(SQL.presence, {"session": session}).fetchall()]

    def record_reads(self, session: str, chat: str, message_ids: list[str]) -> None:
        """A client sent read receipts (blue ticks) for messages it received in ``chat``."""
        now = time.time()
        for message_id in message_ids:
            self.conn.execute(SQL.record_read, {"session": session, "chat": chat, "message_id": message_id, "at": now})

    def read_receipts(self, session: str) -> list[JsonObject]:
        """The session's read receipts, oldest first."""
        return [dict(r) for r in self.conn.execute(SQL.read_receipts, {"session": session}).fetchall()]

    # --- groups ---------------------------------------------------------------------------------

    def save_group(self, group_id: str, body: JsonObject) -> None:
        """Create a group or store its new state."""
        self.conn.execute(SQL.save_group, {"id": group_id, "body": json.dumps(body), "at": time.time()})

    def group(self, group_id: str) -> GroupRow | None:
        """One group by id."""
        row = self.conn.execute(SQL.group, {"id": group_id}).fetchone()
        return _group(row) if row else None

    def groups(self) -> list[GroupRow]:
        """Every group, oldest first."""
        return [_group(r) for r in self.conn.execute(SQL.all_groups).fetchall()]

    def linked_phones(self) -> dict[str, str]:
        """Session → phone number, for every device linked now."""
        return {r["session"]: r["phone"] for r in self.conn.execute(SQL.linked_phones).fetchall()}

    # --- media ------------------------------------------------------------------------------------

    def add_media(self, handle: str, sha256: str, size: int, mime: str, name: str | None) -> None:
        """Record an upload to the media server."""
        self.conn.execute(SQL.add_media, {"handle": handle, "sha256": sha256, "size": size, "mime": mime,
                                          "name": name})

    def media(self, handle: str) -> MediaRow | None:
        """An upload by handle."""
        row = self.conn.execute(SQL.media, {"handle": handle}).fetchone()
        return cast(MediaRow, dict(row)) if row else None
