"""Fetching media to send: by URL with a size limit and a timeout, or bytes as given.

Drivers call this for media given by URL. A URL that answers 4xx or media over the limit
will never work (``SendRejected``); network trouble and 5xx may (a retryable ``DriverError``).

The URL comes from a tenant and our server fetches it, so it gets the same destination
rules as tenant webhooks: http(s) to public addresses only (``WWEBJS_MEDIA_ALLOW_PRIVATE_URLS``
for local development), checked on every redirect hop, and the request connects to exactly
the address that was checked (Host header and TLS SNI keep the name).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from bisnesgpt.engines.wwebjs.driver import MediaSource
from bisnesgpt.engines.wwebjs.driver_errors import DriverError, SendRejected
from bisnesgpt.webhooks.urls import (
    DestinationRefused,
    DestinationUnresolvable,
    Resolver,
    SystemResolver,
    parse_endpoint_url,
    resolve_destination,
)

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class MediaBytes:
    """Media ready to upload: its bytes, mime type and a file name (guessed when not given)."""

    data: bytes
    mime_type: str
    filename: str


class MediaDownloadFailed(DriverError, summary="Media could not be downloaded", code="MEDIA_DOWNLOAD_FAILED"):
    """The media URL could not be fetched now (network trouble, 5xx): a later try may work."""


def _too_large(limit: int) -> SendRejected:
    return SendRejected(f"media is larger than the {limit} byte limit (WWEBJS_MEDIA_MAX_BYTES)",
                        code="MEDIA_TOO_LARGE")


def _guess_name(url: str | None, mime: str) -> str:
    if url:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        if name:
            return name
    return "file" + (mimetypes.guess_extension(mime) or ".bin")


@dataclass
class MediaFetcher:
    """Downloads media by URL for the drivers (limits and destination rules from settings)."""

    max_bytes: int
    timeout: float
    allow_private: bool = False
    resolver: Resolver = field(default_factory=SystemResolver)

    async def fetch(self, source: MediaSource, client: httpx.AsyncClient | None = None) -> MediaBytes:
        """The media's bytes (see ``fetch_media``), on ``client`` when the driver has one."""
        return await fetch_media(source, max_bytes=self.max_bytes, timeout=self.timeout, client=client,
                                 allow_private=self.allow_private, resolver=self.resolver)


async def fetch_media(source: MediaSource, *, max_bytes: int, timeout: float,
                      client: httpx.AsyncClient | None = None, allow_private: bool = False,
                      resolver: Resolver | None = None) -> MediaBytes:
    """The media's bytes, mime type and a file name."""
    if source.data is not None:
        if len(source.data) > max_bytes:
            raise _too_large(max_bytes)
        mime = source.mime_type or "application/octet-stream"
        return MediaBytes(source.data, mime, source.filename or _guess_name(None, mime))
    if not source.url:
        raise SendRejected("media has neither a URL nor bytes", code="INVALID_PAYLOAD")
    owned = client is None
    http = client or httpx.AsyncClient(timeout=timeout, trust_env=False)
    url = source.url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            request = await _checked_request(http, url, allow_private, resolver or SystemResolver())
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                data, header_mime = await _read_body(response, max_bytes)
                break
            finally:
                await response.aclose()
        else:
            raise SendRejected(f"media URL redirected more than {MAX_REDIRECTS} times", code="MEDIA_DOWNLOAD_FAILED")
    except httpx.HTTPError as exc:
        raise MediaDownloadFailed(f"media download failed: {exc or type(exc).__name__}") from exc
    finally:
        if owned:
            await http.aclose()
    mime = source.mime_type or header_mime or mimetypes.guess_type(url)[0] or "application/octet-stream"
    return MediaBytes(data, mime, source.filename or _guess_name(url, mime))


async def _checked_request(http: httpx.AsyncClient, url: str, allow_private: bool,
                           resolver: Resolver) -> httpx.Request:
    """A GET to exactly the address the destination check allowed."""
    try:
        target = parse_endpoint_url(url)
        addresses = await resolve_destination(target, resolver, allow_private=allow_private, what="media URLs",
                                              setting="WWEBJS_MEDIA_ALLOW_PRIVATE_URLS")
    except DestinationRefused as exc:
        raise SendRejected(f"media URL refused: {exc.detail}", code="MEDIA_URL_REFUSED") from exc
    except DestinationUnresolvable as exc:
        raise MediaDownloadFailed(exc.detail) from exc
    extensions = {"sni_hostname": target.host} if target.scheme == "https" and target.ip_literal is None else {}
    return http.build_request("GET", target.url_for_address(addresses[0]), headers={"Host": target.host_header},
                              extensions=extensions)


async def _read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, str | None]:
    if 400 <= response.status_code < 500:
        raise SendRejected(f"media URL answered {response.status_code}", code="MEDIA_DOWNLOAD_FAILED")
    if response.status_code >= 300:
        raise MediaDownloadFailed(f"media URL answered {response.status_code}")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    header_mime = response.headers.get("content-type", "").split(";", 1)[0].strip() or None
    return b"".join(chunks), header_mime
