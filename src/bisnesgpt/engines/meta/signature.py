"""``X-Hub-Signature-256``: HMAC-SHA256 of the raw request body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

from bisnesgpt.core.crypto import constant_time_equals

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value Meta would send for ``body``."""
    return _PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header_value: str | None) -> bool:
    """True only for a well-formed header matching ``body`` (compared in constant time)."""
    if not secret or not header_value or not header_value.startswith(_PREFIX):
        return False
    return constant_time_equals(sign(secret, body), _PREFIX + header_value[len(_PREFIX):].strip().lower())
