"""Transport profiles: where a Cloud API request goes and how it authenticates.

* ``meta`` — Meta's Graph API: ``Authorization: Bearer <token>``, paths
  ``/{version}/{phone_number_id}/messages|media`` and ``/{version}/{media_id}``; media
  download URLs are fetched as given, with the same Bearer token.
* ``d360`` — 360dialog's Cloud API proxy: ``D360-API-KEY: <key>``, no version and no phone
  id in the path (``/messages``, ``/media``, ``/{media_id}``); a media URL's host is
  replaced by 360dialog's host (path and query kept), as 360dialog documents.

Both speak the same message bodies and the same error envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.phones.store import PhoneConfig

ProfileName = Literal["meta", "d360"]
D360_CONNECTION_TYPE = "360dialog"
META_CONNECTION_TYPES = frozenset({"meta_direct", "meta_embedded"})


@dataclass(frozen=True)
class Credentials:
    """Everything needed to call the Cloud API for one phone (the secret never printed)."""

    profile: ProfileName
    base_url: str
    secret: str = field(repr=False)
    phone_number_id: str | None = None
    version: str = "v23.0"

    def _root(self) -> str:
        return self.base_url.rstrip("/")

    def _graph(self, path: str) -> str:
        return f"{self._root()}/{self.version}/{path}"

    def _url(self, path: str, *, phone_scoped: bool) -> str:
        """``path`` under this profile's root: 360dialog's unversioned, or Graph's (under the phone id)."""
        if self.profile == "d360":
            return f"{self._root()}/{path}"
        return self._graph(f"{self.phone_number_id}/{path}" if phone_scoped else path)

    def messages_url(self) -> str:
        """Where message bodies (and read receipts) are POSTed."""
        return self._url("messages", phone_scoped=True)

    def phone_number_url(self) -> str:
        """The phone number object itself (Graph only: 360dialog has no phone id in its paths)."""
        return self._graph(str(self.phone_number_id))

    def waba_phone_numbers_url(self, waba_id: str) -> str:
        """A WhatsApp Business Account's phone numbers (Graph only)."""
        return self._graph(f"{waba_id}/phone_numbers")

    def d360_health_status_url(self) -> str:
        """360dialog's health status of the key's number (its phone number and WABA ids)."""
        return f"{self._root()}/health_status"

    def media_upload_url(self) -> str:
        """Where media is uploaded (multipart) to get a media id."""
        return self._url("media", phone_scoped=True)

    def media_object_url(self, media_id: str) -> str:
        """One uploaded media object: GET retrieves its download URL, DELETE removes it."""
        return self._url(media_id, phone_scoped=False)

    def download_url(self, media_url: str) -> str:
        """The URL to GET a retrieved media URL from (360dialog proxies Meta's host)."""
        if self.profile == "meta":
            return media_url
        base = urlsplit(self._root())
        given = urlsplit(media_url)
        return urlunsplit((base.scheme, base.netloc, given.path, given.query, ""))

    def auth_headers(self) -> dict[str, str]:
        """The header that authenticates a request under this profile."""
        if self.profile == "d360":
            return {"D360-API-KEY": self.secret}
        return {"Authorization": f"Bearer {self.secret}"}


def meta_credentials(settings: Settings, phone_number_id: str, access_token: str) -> Credentials:
    """Graph API credentials at the configured Graph URL and version."""
    return Credentials("meta", settings.meta_graph_url, access_token, phone_number_id, settings.meta_graph_version)


def d360_credentials(settings: Settings, api_key: str) -> Credentials:
    """360dialog credentials at the configured 360dialog URL (no phone id: the key names the number)."""
    return Credentials("d360", settings.d360_base_url, api_key, None, settings.meta_graph_version)


def credentials_for_phone(settings: Settings, box: SecretBox, phone: PhoneConfig) -> Credentials:
    """Credentials of a configured phone, or a permanent error naming what is missing.

    Per-phone ``settings`` may override the base URL (``graph_url`` / ``d360_base_url``) and
    the Graph version (``graph_version``), e.g. to point one phone at a sandbox.
    """
    overrides = phone.settings or {}
    if phone.connection_type == D360_CONNECTION_TYPE:
        key = phone.dialog360_api_key(box)
        if not key:
            raise PermanentSendError("360dialog phone has no API key configured", code="PHONE_NOT_CONFIGURED",
                                     title="360dialog API key missing")
        base = str(overrides.get("d360_base_url") or settings.d360_base_url)
        return Credentials("d360", base, key, phone.meta_phone_number_id, settings.meta_graph_version)
    if phone.connection_type in META_CONNECTION_TYPES:
        token = phone.meta_access_token(box)
        if not token or not phone.meta_phone_number_id:
            raise PermanentSendError("Meta phone lacks an access token or phone_number_id",
                                     code="PHONE_NOT_CONFIGURED", title="Meta credentials missing")
        base = str(overrides.get("graph_url") or settings.meta_graph_url)
        version = str(overrides.get("graph_version") or settings.meta_graph_version)
        return Credentials("meta", base, token, phone.meta_phone_number_id, version)
    raise PermanentSendError(f"phone uses connection type {phone.connection_type!r}, not the Cloud API",
                             code="WRONG_ENGINE", title="Phone is not a Cloud API phone")
