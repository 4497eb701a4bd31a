"""Media routes: upload (``POST /api/v1/media``), download by key, and signed URLs without a key.

Downloads stream from the media store with ``Content-Type``, ``Content-Length``,
``Content-Disposition`` (the original file name), ``ETag`` (the sha256) and single
``Range`` requests (206; 416 past the end). Another company's media is a 404, the same as
no media; a signed URL that was changed or has expired is a 403.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from bisnesgpt.api.auth import CurrentPrincipal
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, problem_responses
from bisnesgpt.core.errors import PayloadTooLarge, ValidationFailed
from bisnesgpt.media.downloads import stored_media
from bisnesgpt.media.library import MediaLibrary, MediaNotFound, MediaObject
from bisnesgpt.media.signing import MediaUrlSigner, SignatureRefused
from bisnesgpt.media.store import SENDABLE_TYPES, RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_CHUNK = 256 * 1024
MEDIA_EXAMPLE = {"id": "med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f",
                 "url": "/api/v1/media/med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f/signed?expires=1767225600&signature=…",
                 "mime_type": "application/pdf", "size": 10485760,
                 "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "filename": "offer.pdf", "state": "stored", "error": None}
MediaIdPath = Annotated[str, Path(min_length=5, max_length=64, pattern=r"^med_[0-9a-f]+$",
                                  description="A media id (an upload's, or data.media.id of a message event)",
                                  examples=["med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f"])]
CompanyQuery = Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN,
                                           description="The company (operator keys only)", examples=["acme"])]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) a single ``Range`` header asks for; None for the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(0) == "bytes=-":
        return None  # multiple ranges or another unit: answer the whole file (RFC 9110 allows it)
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(f"the media has {size} bytes: ask for a range within them")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"the media has {size} bytes: ask for a range within them", extra={"size": size})
    return start, end


def content_disposition(media: MediaObject) -> str:
    """``inline`` with the original name (RFC 6266: an ASCII fallback and the UTF-8 form)."""
    name = media.filename or media.id
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def media_response(library: MediaLibrary, media: MediaObject, range_header: str | None) -> StreamingResponse:
    """The media's bytes (or the asked range) streamed with their headers."""
    headers = {"Accept-Ranges": "bytes", "ETag": f"\"{media.sha256}\"", "Content-Disposition":
               content_disposition(media), "Cache-Control": "private, max-age=3600",
               "X-Content-Type-Options": "nosniff"}
    wanted = byte_range(range_header, media.size_bytes)
    if wanted is None:
        headers["Content-Length"] = str(media.size_bytes)
        return StreamingResponse(library.read(media), media_type=media.mime_type, headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{media.size_bytes}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(library.read(media, start, end), status_code=206, media_type=media.mime_type,
                             headers=headers)


async def _upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(UPLOAD_CHUNK):
        yield chunk


def build(library: MediaLibrary, signer: MediaUrlSigner) -> APIRouter:
    """The media routes over ``library``."""
    router = APIRouter(tags=["media"])

    @router.post(
        "/api/v1/media", status_code=201, summary="Upload media to send later (multipart field `file`)",
        responses={201: {"content": {"application/json": {"example": {**MEDIA_EXAMPLE, "state": "stored"}}}},
                   **problem_responses(401, 404, 413, 415, 422, 503)},
    )
    async def upload_media(request: Request, principal: CurrentPrincipal, file: UploadFile,
                           companyId: CompanyQuery = None) -> JSONResponse:
        company_id = principal.company_required(companyId)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > library.max_bytes + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"media is larger than the {library.max_bytes} byte limit (MEDIA_MAX_BYTES)",
                                  extra={"limit": library.max_bytes})
        if not file.filename and file.size == 0:
            raise ValidationFailed("file: send the media as the multipart field 'file'",
                                   errors=[{"field": "file", "message": "empty", "type": "missing"}])
        media = await library.ingest(company_id, _upload_chunks(file), origin="upload", filename=file.filename,
                                     declared_type=file.content_type, allowed_types=SENDABLE_TYPES)
        return JSONResponse(dict(stored_media(signer, media)), status_code=201)

    @router.get(
        "/api/v1/media/{mediaId}", summary="Download media (streamed; Range requests)",
        responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
                   206: {"description": "The asked range"}, **problem_responses(401, 404, 416, 422, 503)},
    )
    async def download_media(request: Request, principal: CurrentPrincipal, mediaId: MediaIdPath,
                             companyId: CompanyQuery = None) -> StreamingResponse:
        company_id = principal.company_scope(companyId)
        media = await (library.get(company_id, mediaId) if company_id else _any(library, mediaId))
        return media_response(library, media, request.headers.get("range"))

    @router.get(
        "/api/v1/media/{mediaId}/info", summary="What is known about media (type, size, sha256, a signed URL)",
        responses={200: {"content": {"application/json": {"example": MEDIA_EXAMPLE}}},
                   **problem_responses(401, 404, 422, 503)},
    )
    async def media_info(principal: CurrentPrincipal, mediaId: MediaIdPath,
                         companyId: CompanyQuery = None) -> JSONResponse:
        company_id = principal.company_scope(companyId)
        media = await (library.get(company_id, mediaId) if company_id else _any(library, mediaId))
        return JSONResponse(dict(stored_media(signer, media)))

    @router.get(
        "/api/v1/media/{mediaId}/signed", summary="Download media by a signed URL (no API key; expires)",
        responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
                   206: {"description": "The asked range"}, **problem_responses(403, 404, 416, 422)},
    )
    async def signed_media(
        request: Request, mediaId: MediaIdPath,
        expires: Annotated[str, Query(max_length=20, description="From the signed URL", examples=["1767225600"])],
        signature: Annotated[str, Query(max_length=128, description="From the signed URL")],
    ) -> StreamingResponse:
        media = await library.get_any_company(mediaId)
        if media is None:
            # The same answer as a wrong signature: a URL never confirms which media exist.
            raise SignatureRefused("the media URL's signature does not match: use the URL exactly as given")
        signer.check(media.id, media.company_id, expires, signature)
        return media_response(library, media, request.headers.get("range"))

    return router


async def _any(library: MediaLibrary, media_id: str) -> MediaObject:
    """An operator without a company: media ids are unique across companies."""
    media = await library.get_any_company(media_id)
    if media is None:
        raise MediaNotFound(f"no media {media_id!r}")
    return media
