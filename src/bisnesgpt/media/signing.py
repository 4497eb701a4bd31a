"""Signed media URLs: ``/api/v1/media/{id}/signed?expires=…&signature=…``, no API key needed.

The signature is an HMAC-SHA256 over the media id, its company and the expiry, with
``MEDIA_URL_SECRET`` (or a key derived from ``ENCRYPTION_KEY``), checked in constant time.
A changed id, expiry or signature, or a URL past its expiry, is refused (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlencode

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import Forbidden
from bisnesgpt.core.hmac_secret import hmac_secret

API_PREFIX = "/api/v1/media"


class SignatureRefused(Forbidden):
    """A signed media URL that was changed or has expired."""


class MediaUrlSigner:
    """Makes and checks signed media URLs."""

    def __init__(self, secret: bytes, ttl_seconds: int, public_url: str | None = None) -> None:
        self._key = hmac.new(secret, b"bisnesgpt media url v1", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds
        self.public_url = (public_url or "").rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaUrlSigner:
        """The signer of ``MEDIA_URL_SECRET``, else of ``ENCRYPTION_KEY`` (ConfigError with neither)."""
        secret = hmac_secret(settings.media_url_secret, settings.encryption_key,
                             needs_key="media URLs are signed with a key derived from it (or set MEDIA_URL_SECRET)")
        return cls(secret, settings.media_url_ttl_seconds, settings.public_url)

    def _signature(self, media_id: str, company_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{media_id}\n{company_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, media_id: str, company_id: str, *, now: float | None = None) -> str:
        """A URL for the media that works without a key until it expires (absolute with PUBLIC_URL)."""
        expires = int((now if now is not None else time.time()) + self.ttl_seconds)
        query = urlencode({"expires": expires, "signature": self._signature(media_id, company_id, expires)})
        return f"{self.public_url}{API_PREFIX}/{media_id}/signed?{query}"

    def check(self, media_id: str, company_id: str, expires: str, signature: str, *,
              now: float | None = None) -> None:
        """SignatureRefused unless ``signature`` is this media's and ``expires`` is still ahead."""
        try:
            expiry = int(expires)
        except ValueError:
            expiry = 0
        expected = self._signature(media_id, company_id, expiry)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise SignatureRefused("the media URL's signature does not match: use the URL exactly as given")
        if expiry < (now if now is not None else time.time()):
            raise SignatureRefused("the media URL has expired: fetch the message (or the media) again for a "
                                   "fresh URL")
