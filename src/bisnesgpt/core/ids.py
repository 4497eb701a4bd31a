"""Identifiers: time-ordered UUIDv7 strings for messages and events (btree friendly)."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, version, 74 random bits."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def new_message_id() -> str:
    """A message id: a UUIDv7 in its canonical text form."""
    return str(uuid7())


def new_event_id() -> str:
    """A webhook event id: ``evt_`` and a UUIDv7's hex digits."""
    return f"evt_{uuid7().hex}"
