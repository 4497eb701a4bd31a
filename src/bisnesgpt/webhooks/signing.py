"""Signing secrets and the ``X-Bisnesgpt-Signature`` header.

``X-Bisnesgpt-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``;
during a rotation's overlap window the header carries one ``v1=`` per valid secret (new
first), so a receiver that still has the old secret keeps verifying. The HMAC key is the
secret string itself (UTF-8), exactly as shown to the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Bisnesgpt-Signature"
EVENT_ID_HEADER = "X-Bisnesgpt-Event-Id"
EVENT_TYPE_HEADER = "X-Bisnesgpt-Event-Type"
DELIVERY_ID_HEADER = "X-Bisnesgpt-Delivery-Id"
ATTEMPT_HEADER = "X-Bisnesgpt-Attempt"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh signing secret (shown to the tenant once, stored encrypted)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with the secret string (one ``v1=`` value)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(signing_secrets: Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``: ``t=…`` then one ``v1=…`` per secret."""
    if not signing_secrets:
        raise ValueError("at least one signing secret is needed")
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={compute_signature(s, t, body)}" for s in signing_secrets)])


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
                     now: float | None = None) -> bool:
    """True if one ``v1`` of ``header`` is ``body`` signed with ``secret`` within ``tolerance`` s.

    Compared in constant time; the timestamp window stops replays of old captured requests.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = compute_signature(secret, timestamp, body)
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched
