"""A thin async client for the WhatsApp Cloud API (no SDK).

One ``CloudApiClient`` per process, opened after start: a single ``httpx.AsyncClient``
keeps an HTTP/1.1 keep-alive pool shared by every phone, with explicit timeouts. Calls take
the phone's ``Credentials`` (profile ``meta`` or ``d360``), so one client serves all
tenants. Failures come back as the typed ``CloudApiError`` subclasses of ``errors.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import httpx

from bisnesgpt import __version__
from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.engines.meta import messages
from bisnesgpt.engines.meta.errors import CloudApiError, PermanentGraphError, TransportError
from bisnesgpt.engines.meta.metrics import GRAPH_REQUESTS, GRAPH_SECONDS
from bisnesgpt.engines.meta.profiles import Credentials

if TYPE_CHECKING:
    from bisnesgpt.config import Settings

USER_AGENT = f"bisnesgpt/{__version__}"
# What an operator's "verify" asks for (Meta's PhoneNumberInfo; the first four are the defaults).
PHONE_NUMBER_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating",
                       "code_verification_status", "name_status")


@dataclass(frozen=True)
class SentMessage:
    """The Cloud API's answer to a send: the wamid and the recipient's WhatsApp id."""

    wamid: str
    wa_id: str | None
    message_status: str | None
    raw: JsonObject


@dataclass(frozen=True)
class MediaInfo:
    """A media object's short-lived download URL and what the Cloud API says about the file."""

    id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


class PhoneNumberInfo(TypedDict):
    """What ``get_phone_number`` answers about a business number (None: not in the answer)."""

    id: str | None
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None
    code_verification_status: str | None
    name_status: str | None


class CloudApiClient:
    """Sends messages, marks them read, uploads/retrieves/downloads/deletes media."""

    def __init__(self, *, timeout: float = 30.0, connect_timeout: float = 5.0, max_connections: int = 100,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=timeout)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                    keepalive_expiry=60.0)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudApiClient:
        """A client with the META_HTTP_* timeouts and connection limit."""
        return cls(timeout=settings.meta_http_timeout, connect_timeout=settings.meta_http_connect_timeout,
                   max_connections=settings.meta_http_max_connections)

    async def open(self) -> None:
        """Create the shared connection pool (inside the running event loop)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout, limits=self._limits, transport=self._transport,
                                           headers={"User-Agent": USER_AGENT}, follow_redirects=False)

    async def close(self) -> None:
        """Close the connection pool; requests after this raise until ``open`` again."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> CloudApiClient:
        """``async with CloudApiClient(...) as client``: opened for the block (one-off uses)."""
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Closed when the block ends."""
        await self.close()

    # --- messages -----------------------------------------------------------------------------

    async def send_message(self, creds: Credentials, body: messages.Body) -> SentMessage:
        """POST a message body; returns the wamid (raises a CloudApiError subclass)."""
        response = await self._request("send", creds, "POST", creds.messages_url(), json=body)
        data = _json(response)
        message = _first_object(data.get("messages"))
        if message is None or "id" not in message:
            raise PermanentGraphError(f"send answered without messages[0].id: {str(data)[:200]}",
                                      http_status=response.status_code, error_title="Malformed Cloud API answer")
        contact = _first_object(data.get("contacts")) or {}
        return SentMessage(str(message["id"]), _text(contact.get("wa_id")), _text(message.get("message_status")),
                           data)

    async def mark_as_read(self, creds: Credentials, message_id: str, *, typing_indicator: bool = False) -> bool:
        """Mark an inbound message read (blue ticks), optionally with a typing indicator; True on success."""
        body = messages.mark_as_read(message_id, typing_indicator=typing_indicator)
        response = await self._request("mark_read", creds, "POST", creds.messages_url(), json=body)
        return bool(_json(response).get("success", False))

    # --- phone numbers ------------------------------------------------------------------------

    async def get_phone_number(self, creds: Credentials) -> PhoneNumberInfo:
        """The business phone number object (``GET /{version}/{phone_number_id}?fields=…``).

        Display number, verified name, quality rating, verification and name status.
        """
        if creds.profile != "meta" or not creds.phone_number_id:
            raise PermanentGraphError("phone number details need a Cloud API phone (profile meta, phone_number_id)",
                                      http_status=400, error_title="Not a Cloud API phone")
        response = await self._request("phone_number", creds, "GET", creds.phone_number_url(),
                                       params={"fields": ",".join(PHONE_NUMBER_FIELDS)})
        data = _json(response)
        return PhoneNumberInfo(
            id=_text(data.get("id")), display_phone_number=_text(data.get("display_phone_number")),
            verified_name=_text(data.get("verified_name")), quality_rating=_text(data.get("quality_rating")),
            code_verification_status=_text(data.get("code_verification_status")),
            name_status=_text(data.get("name_status")),
        )

    async def waba_phone_number_ids(self, creds: Credentials, waba_id: str) -> list[str]:
        """The ids of the WABA's phone numbers the token may read (``GET /{version}/{waba_id}/phone_numbers``).

        Only the first page: a WABA holds a handful of numbers, far below Graph's page size.
        """
        response = await self._request("waba_phone_numbers", creds, "GET", creds.waba_phone_numbers_url(waba_id),
                                       params={"fields": "id,display_phone_number"})
        data = _json(response).get("data")
        rows = data if isinstance(data, list) else []
        return [str(row["id"]) for row in rows if isinstance(row, dict) and isinstance(row.get("id"), str)]

    async def d360_health_status(self, creds: Credentials) -> dict[str, str]:
        """360dialog's ``GET /health_status`` for the key's number: entity type → id (PHONE_NUMBER, WABA…)."""
        response = await self._request("health_status", creds, "GET", creds.d360_health_status_url())
        status = _json(response).get("health_status")
        entities = status.get("entities") if isinstance(status, dict) else None
        out: dict[str, str] = {}
        for entity in entities if isinstance(entities, list) else []:
            if isinstance(entity, dict) and isinstance(entity.get("entity_type"), str) \
                    and isinstance(entity.get("id"), str):
                out[str(entity["entity_type"])] = str(entity["id"])
        return out

    # --- media --------------------------------------------------------------------------------

    async def upload_media(self, creds: Credentials, content: bytes, mime_type: str,
                           filename: str = "file") -> str:
        """Multipart upload (``file``, ``type``, ``messaging_product``); returns the media id."""
        response = await self._request(
            "media_upload", creds, "POST", creds.media_upload_url(),
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        return str(_json(response)["id"])

    async def retrieve_media(self, creds: Credentials, media_id: str) -> MediaInfo:
        """The media's (short-lived) download URL and metadata."""
        params = {"phone_number_id": creds.phone_number_id} if creds.profile == "meta" and creds.phone_number_id \
            else None
        response = await self._request("media_retrieve", creds, "GET", creds.media_object_url(media_id),
                                       params=params)
        data = _json(response)
        size = data.get("file_size")
        return MediaInfo(id=str(data.get("id") or media_id), url=str(data["url"]),
                         mime_type=_text(data.get("mime_type")), sha256=_text(data.get("sha256")),
                         file_size=int(size) if isinstance(size, int | float | str) else None)

    async def download_media(self, creds: Credentials, media_url: str) -> bytes:
        """GET a retrieved media URL with the phone's credentials (the second hop)."""
        response = await self._request("media_download", creds, "GET", creds.download_url(media_url))
        return response.content

    @asynccontextmanager
    async def stream_media(self, creds: Credentials, media_url: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """GET a retrieved media URL with the phone's credentials, its body as chunks (never all in memory)."""
        if self._http is None:
            raise RuntimeError("CloudApiClient is not open")
        started = time.monotonic()
        try:
            async with self._http.stream("GET", creds.download_url(media_url), headers=creds.auth_headers()) \
                    as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    GRAPH_REQUESTS.labels("media_download", creds.profile,
                                          f"http_{response.status_code // 100}xx").inc()
                    raise CloudApiError.from_response(response.status_code, body, dict(response.headers))
                GRAPH_REQUESTS.labels("media_download", creds.profile, "ok").inc()
                yield response.aiter_bytes(256 * 1024)
        except httpx.TimeoutException as exc:
            GRAPH_REQUESTS.labels("media_download", creds.profile, "timeout").inc()
            raise TransportError(f"media_download: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            GRAPH_REQUESTS.labels("media_download", creds.profile, "transport_error").inc()
            raise TransportError(f"media_download: {type(exc).__name__}: {exc}") from exc
        finally:
            GRAPH_SECONDS.labels("media_download").observe(time.monotonic() - started)

    async def download_media_by_id(self, creds: Credentials, media_id: str) -> tuple[MediaInfo, bytes]:
        """Both hops: retrieve the URL, then download it."""
        info = await self.retrieve_media(creds, media_id)
        return info, await self.download_media(creds, info.url)

    async def delete_media(self, creds: Credentials, media_id: str) -> bool:
        """Delete an uploaded media object; True when the Cloud API confirms."""
        response = await self._request("media_delete", creds, "DELETE", creds.media_object_url(media_id))
        return bool(_json(response).get("success", False))

    # --- plumbing -----------------------------------------------------------------------------

    async def _request(self, operation: str, creds: Credentials, method: str, url: str, **kwargs: Any) \
            -> httpx.Response:
        if self._http is None:
            raise RuntimeError("CloudApiClient is not open")
        started = time.monotonic()
        try:
            response = await self._http.request(method, url, headers=creds.auth_headers(), **kwargs)
        except httpx.TimeoutException as exc:
            GRAPH_REQUESTS.labels(operation, creds.profile, "timeout").inc()
            raise TransportError(f"{operation}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            GRAPH_REQUESTS.labels(operation, creds.profile, "transport_error").inc()
            raise TransportError(f"{operation}: {type(exc).__name__}: {exc}") from exc
        finally:
            GRAPH_SECONDS.labels(operation).observe(time.monotonic() - started)
        if response.status_code >= 400:
            error = CloudApiError.from_response(response.status_code, response.content, dict(response.headers))
            GRAPH_REQUESTS.labels(operation, creds.profile, f"http_{response.status_code // 100}xx").inc()
            raise error
        GRAPH_REQUESTS.labels(operation, creds.profile, "ok").inc()
        return response


def _json(response: httpx.Response) -> JsonObject:
    try:
        data: JsonValue = response.json()
    except (json.JSONDecodeError, ValueError) as exc:
        raise PermanentGraphError(f"Cloud API answered non-JSON ({response.status_code})",
                                  http_status=response.status_code, error_title="Malformed Cloud API answer") \
            from exc
    if not isinstance(data, dict):
        raise PermanentGraphError("Cloud API answered a non-object", http_status=response.status_code)
    return data


def _first_object(value: JsonValue) -> JsonObject | None:
    """The first element of a JSON array when it is an object (``messages[0]``, ``contacts[0]``)."""
    first = value[0] if isinstance(value, list) and value else None
    return first if isinstance(first, dict) else None


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
