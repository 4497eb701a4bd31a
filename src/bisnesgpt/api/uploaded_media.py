"""Sends naming media uploaded with ``POST /api/v1/media`` (``{"image": {"id": "med_…"}}``).

Checked when the send is accepted, not when it goes out: an id of no media of the caller's
company is a 404 (the same answer for another company's media as for none), and media whose
type the message type cannot carry (a PDF as ``image``) a 422. The accepted message then
carries the media's type, and a document its original file name unless the client gave one.
Any other ``id`` (not ``med_…``) is a Cloud API media id, passed through as before.
"""

from __future__ import annotations

import dataclasses

from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.media.library import MediaLibrary, MediaObject
from bisnesgpt.messaging.drafts import Draft

UPLOADED_PREFIX = "med_"
# What each message type can carry, by the media type's first part (documents carry anything).
KIND_TYPES = {"image": ("image/",), "video": ("video/",), "audio": ("audio/",), "sticker": ("image/webp",)}


def fits(kind: str, mime_type: str) -> bool:
    """Whether media of ``mime_type`` can go out as a ``kind`` message."""
    prefixes = KIND_TYPES.get(kind)
    return prefixes is None or mime_type.startswith(prefixes)


class UploadedMedia:
    """Settles a draft's ``med_…`` media id against the company's media library."""

    def __init__(self, library: MediaLibrary) -> None:
        self.library = library

    async def settle(self, company_id: str, draft: Draft) -> Draft:
        """The draft with its uploaded media's type (and a document's name); MediaNotFound → 404."""
        media_id = draft.media.id
        if media_id is None or not media_id.startswith(UPLOADED_PREFIX) or not isinstance(draft.body, dict):
            return draft
        media = await self.library.get(company_id, media_id)
        if not fits(draft.type, media.mime_type):
            raise ValidationFailed(
                f"{draft.type}.id: media {media_id} is {media.mime_type}, which cannot be sent as {draft.type}; "
                "send it as a document or upload a file of the right type",
                errors=[{"field": f"{draft.type}.id", "message": f"{media.mime_type} is not a {draft.type}",
                         "type": "media_type"}])
        return dataclasses.replace(draft, mime_type=media.mime_type, body=_with_name(draft, media))


def _with_name(draft: Draft, media: MediaObject) -> JsonObject:
    body: JsonObject = dict(draft.body) if isinstance(draft.body, dict) else {}
    if draft.type == "document" and not body.get("filename") and media.filename:
        body["filename"] = media.filename
    return body
