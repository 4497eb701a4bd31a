"""Sending media uploaded to the gateway (``POST /api/v1/media``, ids ``med_…``) from a WhatsApp-Web session.

The drivers upload bytes to WhatsApp themselves (encrypting them with a fresh media key),
so the stored object's bytes are read from the media store just before the send, within
``WWEBJS_MEDIA_MAX_BYTES`` like media fetched by link. Media gone from the store fails the
message for good; a store that cannot be read now is retried.
"""

from __future__ import annotations

import dataclasses

from bisnesgpt.engines.wwebjs.driver import MediaSource, OutgoingMessage
from bisnesgpt.media.library import MediaLibrary, MediaNotFound
from bisnesgpt.media.store import BlobMissing, MediaStoreError
from bisnesgpt.messaging.errors import PermanentSendError, RetryableSendError


def _gone(media_id: str) -> PermanentSendError:
    return PermanentSendError(f"media {media_id} is no longer stored (expired or deleted): upload it again",
                              code="MEDIA_NOT_FOUND", title="Uploaded media not found")


class StoredMediaReader:
    """Fills an outgoing message's ``med_…`` media with the stored bytes."""

    def __init__(self, library: MediaLibrary, max_bytes: int) -> None:
        self.library = library
        self.max_bytes = max_bytes

    async def fill(self, company_id: str, outgoing: OutgoingMessage) -> OutgoingMessage:
        """``outgoing`` itself, or a copy whose media carries the stored object's bytes, type and name."""
        source = outgoing.media
        if source is None or source.media_id is None:
            return outgoing
        try:
            media = await self.library.get(company_id, source.media_id)
        except MediaNotFound as exc:
            raise _gone(source.media_id) from exc
        if media.size_bytes > self.max_bytes:
            raise PermanentSendError(f"media {media.id} has {media.size_bytes} bytes, over the "
                                     f"{self.max_bytes} byte limit of WhatsApp-Web sends (WWEBJS_MEDIA_MAX_BYTES)",
                                     code="MEDIA_TOO_LARGE", title="Media too large")
        try:
            data = b"".join([chunk async for chunk in self.library.read(media)])
        except BlobMissing as exc:
            raise _gone(media.id) from exc
        except MediaStoreError as exc:
            raise RetryableSendError(f"could not read media {media.id} from the media store: {exc}",
                                     code="MEDIA_STORE_UNAVAILABLE", title="Media store unavailable") from exc
        filled = MediaSource(data=data, mime_type=media.mime_type, filename=source.filename or media.filename)
        return dataclasses.replace(outgoing, media=filled)
