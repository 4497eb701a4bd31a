"""Fetching media to send: by URL with a size limit and a timeout, or bytes as given.

Drivers call this for media given by URL. A URL that answers 4xx or media over the limit
will never work (``SendRejected``); network trouble and 5xx may (a retryable ``DriverError``).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from bisnesgpt.engines.wwebjs.driver import DriverError, MediaSource, SendRejected


@dataclass(frozen=True)
class MediaBytes:
    data: bytes
    mime_type: str
    filename: str


class MediaDownloadFailed(DriverError):
    type = "wwebjs-media-download-failed"
    title = "Media could not be downloaded"
    code = "MEDIA_DOWNLOAD_FAILED"


def _too_large(limit: int) -> SendRejected:
    return SendRejected(f"media is larger than the {limit} byte limit (WWEBJS_MEDIA_MAX_BYTES)",
                        code="MEDIA_TOO_LARGE")


def _guess_name(url: str | None, mime: str) -> str:
    if url:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        if name:
            return name
    return "file" + (mimetypes.guess_extension(mime) or ".bin")


async def fetch_media(source: MediaSource, *, max_bytes: int, timeout: float,
                      client: httpx.AsyncClient | None = None) -> MediaBytes:
    """The media's bytes, mime type and a file name."""
    if source.data is not None:
        if len(source.data) > max_bytes:
            raise _too_large(max_bytes)
        mime = source.mime_type or "application/octet-stream"
        return MediaBytes(source.data, mime, source.filename or _guess_name(None, mime))
    if not source.url:
        raise SendRejected("media has neither a URL nor bytes", code="INVALID_PAYLOAD")
    owned = client is None
    http = client or httpx.AsyncClient(follow_redirects=True, timeout=timeout)
    try:
        async with http.stream("GET", source.url, timeout=timeout) as response:
            if 400 <= response.status_code < 500:
                raise SendRejected(f"media URL answered {response.status_code}", code="MEDIA_DOWNLOAD_FAILED")
            if response.status_code >= 500:
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
    except httpx.HTTPError as exc:
        raise MediaDownloadFailed(f"media download failed: {exc or type(exc).__name__}") from exc
    finally:
        if owned:
            await http.aclose()
    mime = source.mime_type or header_mime or mimetypes.guess_type(source.url)[0] or "application/octet-stream"
    return MediaBytes(b"".join(chunks), mime, source.filename or _guess_name(source.url, mime))
