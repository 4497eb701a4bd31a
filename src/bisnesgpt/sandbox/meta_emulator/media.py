"""Media: ``POST …/media`` uploads, ``GET``/``DELETE`` of a media id, and the download behind its URL.

A retrieved media object carries a URL that expires (``media_url_ttl``) and is signed by the
emulator; downloading it needs the owning phone's credentials, as Meta's lookaside URLs do.
A media id of another phone, or one deleted, is Graph's unknown object (code 100, subcode 33).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypedDict

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from bisnesgpt.sandbox.meta_emulator.auth import Gate
from bisnesgpt.sandbox.meta_emulator.context import Answers, RequestContext
from bisnesgpt.sandbox.meta_emulator.phone_numbers import PhoneNumbers
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState, StoredMedia

MAX_MEDIA_BYTES = 100 * 1024 * 1024
# Meta's supported media types per message type (a document may be any of them too).
SUPPORTED_TYPES: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "sticker": frozenset({"image/webp"}),
    "document": frozenset({
        "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"}),
}
UPLOADABLE_TYPES = frozenset().union(*SUPPORTED_TYPES.values())


def base_type(mime_type: str) -> str:
    """``audio/ogg; codecs=opus`` → ``audio/ogg``."""
    return mime_type.split(";", 1)[0].strip().lower()


def fits_kind(kind: str, mime_type: str) -> bool:
    """Whether media of ``mime_type`` can go out as a ``kind`` message (a document takes any supported type)."""
    base = base_type(mime_type)
    return base in (UPLOADABLE_TYPES if kind == "document" else SUPPORTED_TYPES.get(kind, frozenset()))
ATTACHMENTS_PATH = "/whatsapp_business/attachments/"


class MediaObject(TypedDict):
    """What ``GET /{version}/{media_id}`` answers."""

    messaging_product: str
    url: str
    mime_type: str
    sha256: str
    file_size: int
    id: str


@dataclass(eq=False)
class Media:
    """The media endpoints of both profiles (``d360_phone`` set: a 360dialog call for that phone)."""

    state: EmulatorState
    gate: Gate
    answers: Answers
    phone_numbers: PhoneNumbers

    async def upload(self, request: Request, phone: EmulatedPhone, ctx: RequestContext) -> JSONResponse:
        """A multipart upload (``file``, ``type``, ``messaging_product``) for ``phone``: its new media id."""
        try:
            form = await request.form(max_part_size=MAX_MEDIA_BYTES)
        except Exception as exc:  # malformed multipart: a client mistake, never a 500
            return self.answers.error(ctx, 100, details=f"could not parse multipart body: {exc}")
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp":
            return self.answers.error(ctx, 100, details="The parameter messaging_product is required.")
        if not isinstance(upload, UploadFile):
            return self.answers.error(ctx, 100, details="The parameter file is required.")
        content = await upload.read()
        if len(content) > MAX_MEDIA_BYTES:
            return self.answers.error(ctx, 131053, details="The file is larger than 100 MB.")
        declared = form.get("type")
        mime = str(declared) if isinstance(declared, str) and declared else (upload.content_type or "")
        if base_type(mime) not in UPLOADABLE_TYPES:
            return self.answers.error(ctx, 100, message="(#100) Param file must be a file with one of the following "
                                      f"types: {', '.join(sorted(UPLOADABLE_TYPES))}. Received file of type '{mime}'.")
        media = self.state.store_media(phone.phone_number_id, content, mime)
        return self.answers.ok(ctx, {"id": media.id}, media_id=media.id, size=len(content))

    def retrieve(self, request: Request, media_id: str, ctx: RequestContext, *,
                 d360_phone: EmulatedPhone | None = None) -> JSONResponse:
        """The media object with a fresh download URL; on the Bearer profile a phone id is the phone object."""
        media = self._media_for(request, media_id, ctx, d360_phone, self.state.phones.get(media_id))
        if isinstance(media, JSONResponse):
            return media
        if media is None:
            if d360_phone is None and media_id in self.state.phones:
                return self.phone_numbers.answer(request, ctx, self.state.phones[media_id])
            return self.answers.unknown(ctx, media_id, "get")
        expires = int(time.time() + self.state.media_url_ttl)
        url = f"{str(request.base_url).rstrip('/')}{ATTACHMENTS_PATH}?{self.state.media_query(media.id, expires)}"
        found: MediaObject = {"messaging_product": "whatsapp", "url": url, "mime_type": media.mime_type,
                              "sha256": media.sha256_hex, "file_size": len(media.content), "id": media.id}
        return self.answers.ok(ctx, found, media_id=media.id)

    def delete(self, request: Request, media_id: str, ctx: RequestContext, *,
               d360_phone: EmulatedPhone | None = None) -> JSONResponse:
        """Forget the media (its URLs stop working)."""
        media = self._media_for(request, media_id, ctx, d360_phone, None)
        if isinstance(media, JSONResponse):
            return media
        if media is None:
            return self.answers.unknown(ctx, media_id, "delete")
        del self.state.media[media_id]
        return self.answers.ok(ctx, {"success": True}, media_id=media_id)

    def _media_for(self, request: Request, media_id: str, ctx: RequestContext, d360_phone: EmulatedPhone | None,
                   unknown_media_phone: EmulatedPhone | None) -> StoredMedia | JSONResponse | None:
        """The caller's media under ``media_id`` (None: no such media, or another phone's), or the 190 answer.

        A Bearer token is checked against the media's phone (``unknown_media_phone`` when there
        is no such media); a 360dialog key already named its phone, whose media alone it sees.
        """
        media = self.state.media.get(media_id)
        if d360_phone is not None:
            return media if media is not None and media.phone_number_id == d360_phone.phone_number_id else None
        phone = self.state.phones.get(media.phone_number_id) if media else unknown_media_phone
        return self.gate.bearer_refusal(request, phone, ctx) or media

    def download(self, request: Request, ctx: RequestContext) -> Response:
        """The bytes behind a media URL: signed and unexpired, with the owning phone's credentials."""
        params = request.query_params
        media_id, digest = params.get("mid", ""), params.get("hash", "")
        try:
            expires = int(params.get("ext", "0"))
        except ValueError:
            expires = 0
        media = self.state.media.get(media_id)
        if media is None or not self.state.media_url_valid(media_id, expires, digest):
            return self.answers.error(ctx, 100, message="(#100) The media URL is invalid or has expired.",
                                      details="Retrieve the media again for a fresh URL.", status=404)
        problem = self.gate.download_refusal(request, self.state.phones.get(media.phone_number_id), ctx)
        if problem is not None:
            return problem
        self.answers.log.add(ctx.fields(), http_status=200, media_id=media_id, size=len(media.content))
        return Response(media.content, media_type=media.mime_type)
