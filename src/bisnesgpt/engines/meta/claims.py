"""Proving a phone claim at the provider before it is stored (the ``ClaimCheck`` of the phone service).

* Meta: ``GET /{version}/{phone_number_id}`` with the access token (Graph answers 190 for a
  token it does not accept, 100/33 for a number the token may not read), then, when a WABA is
  given, ``GET /{version}/{waba_id}/phone_numbers``: the number must be one of them.
* 360dialog: ``GET /health_status`` with the ``D360-API-KEY``: 360dialog names the key's
  phone number and WABA.

A refusal is ``ClaimNotProven`` (422: nothing stored); a provider that does not answer is
``ServiceUnavailable`` (503: nothing stored, try again).
"""

from __future__ import annotations

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ClaimNotProven, ServiceUnavailable, ValidationFailed
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import CloudApiError, RetryableGraphError
from bisnesgpt.engines.meta.profiles import Credentials
from bisnesgpt.phones.service import ProvenNumber

# Graph's "invalid OAuth access token" and "object does not exist / missing permissions".
INVALID_TOKEN = 190
UNKNOWN_OBJECT = 100


class CloudApiClaims:
    """Asks Meta's Graph API (``META_GRAPH_URL``) and 360dialog (``D360_BASE_URL``) who owns a number."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _client(self) -> CloudApiClient:
        return CloudApiClient(timeout=self.settings.meta_http_timeout,
                              connect_timeout=self.settings.meta_http_connect_timeout)

    async def prove_meta(self, *, phone_number_id: str, waba_id: str | None, access_token: str) -> ProvenNumber:
        """The number, once the token has read it (and found it among the WABA's numbers)."""
        for field, value in (("phoneNumberId", phone_number_id), ("wabaId", waba_id or "0")):
            if not (value.isascii() and value.isdigit()):
                raise ValidationFailed(f"{field} must be a Graph id (digits only)",
                                       errors=[{"field": field, "message": "digits only", "type": "pattern"}])
        _check_header_safe(access_token, "accessToken")
        creds = Credentials("meta", self.settings.meta_graph_url, access_token, phone_number_id,
                            self.settings.meta_graph_version)
        async with self._client() as client:
            try:
                info = await client.get_phone_number(creds)
            except CloudApiError as exc:
                raise _refusal(exc, "phoneNumberId", f"the access token cannot read phone number id "
                                                     f"{phone_number_id!r} at Meta") from exc
            if info.get("id") not in (None, phone_number_id):
                raise ClaimNotProven(f"Meta answered another phone number for {phone_number_id!r}",
                                     errors=[_field("phoneNumberId", "not confirmed by Meta")])
            if waba_id:
                try:
                    numbers = await client.waba_phone_number_ids(creds, waba_id)
                except CloudApiError as exc:
                    raise _refusal(exc, "wabaId", f"the access token cannot read the WhatsApp Business Account "
                                                  f"{waba_id!r} at Meta") from exc
                if phone_number_id not in numbers:
                    raise ClaimNotProven(
                        f"phone number id {phone_number_id!r} is not a number of the WhatsApp Business Account "
                        f"{waba_id!r}; give the WABA the number belongs to (WhatsApp Manager → Phone numbers)",
                        errors=[_field("wabaId", "the phone number is not in this WABA")])
        return ProvenNumber(phone_number_id, waba_id, info.get("display_phone_number"))

    async def prove_d360(self, *, api_key: str) -> ProvenNumber:
        """The number 360dialog names for the key."""
        _check_header_safe(api_key, "apiKey")
        creds = Credentials("d360", self.settings.d360_base_url, api_key, None, self.settings.meta_graph_version)
        async with self._client() as client:
            try:
                entities = await client.d360_health_status(creds)
            except CloudApiError as exc:
                raise _refusal(exc, "apiKey", "360dialog did not accept the API key") from exc
        phone_number_id = entities.get("PHONE_NUMBER")
        if not phone_number_id:
            raise ClaimNotProven("360dialog accepted the API key but named no phone number for it",
                                 errors=[_field("apiKey", "no phone number behind this key")])
        return ProvenNumber(phone_number_id, entities.get("WABA"))


def _check_header_safe(secret: str, field: str) -> None:
    """A credential goes into an HTTP header: visible ASCII only."""
    if not secret or not all("!" <= ch <= "~" for ch in secret):
        raise ValidationFailed(f"{field} must be visible ASCII characters (as the provider issues it)",
                               errors=[{"field": field, "message": "visible ASCII only", "type": "pattern"}])


def _field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "provider"}


def _refusal(exc: CloudApiError, field: str, what: str) -> ClaimNotProven | ServiceUnavailable:
    """A provider's refusal as ``ClaimNotProven``; a provider that did not answer as ``ServiceUnavailable``."""
    if isinstance(exc, RetryableGraphError) or (exc.http_status or 0) >= 500:
        return ServiceUnavailable(f"could not ask the provider ({exc.code_text}: {exc.error_title}); nothing was "
                                  "stored, try again")
    reason = "the token or key was refused" if exc.code == INVALID_TOKEN or exc.http_status == 401 else \
        "the provider does not know it for these credentials"
    return ClaimNotProven(
        f"{what} ({reason}; {exc.code_text}: {exc.error_title}). The phone was not stored: give credentials "
        "that own this number",
        errors=[_field(field, reason)], extra={"providerCode": exc.code_text})
