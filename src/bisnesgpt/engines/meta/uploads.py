"""Sending media uploaded to the gateway (``POST /api/v1/media``, ids ``med_…``) through the Cloud API.

The Cloud API cannot read our media store, so before the send the bytes are uploaded to
the phone's Graph media endpoint (``POST /{phone-number-id}/media``, or 360dialog's
``/media``) and the message goes out naming the Graph id Meta answered. The bytes travel
from the store through a temporary file into the streamed multipart request, never whole
in memory. Each try uploads again: Graph ids belong to one phone, and a retry after a
failed send must not depend on an upload whose id it cannot check.
"""

from __future__ import annotations

from bisnesgpt.engines.meta import messages
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.profiles import Credentials
from bisnesgpt.media.library import MediaLibrary, MediaNotFound
from bisnesgpt.media.store import BlobMissing, MediaStoreError
from bisnesgpt.messaging.errors import PermanentSendError, RetryableSendError

UPLOADED_PREFIX = "med_"


def uploaded_media_id(body: messages.Body) -> str | None:
    """The gateway media id a media message names (None: a link, a Graph id, or no media)."""
    kind = str(body.get("type"))
    content = body.get(kind) if kind in messages.MEDIA_TYPES else None
    media_id = content.get("id") if isinstance(content, dict) else None
    return media_id if isinstance(media_id, str) and media_id.startswith(UPLOADED_PREFIX) else None


class GraphUploads:
    """Turns a body naming gateway media into one naming the Graph media id of the same bytes."""

    def __init__(self, library: MediaLibrary, client: CloudApiClient) -> None:
        self.library = library
        self.client = client

    async def resolve(self, company_id: str, creds: Credentials, body: messages.Body) -> messages.Body:
        """``body`` itself, or a copy whose media ``id`` is the Graph id of the uploaded bytes.

        Graph errors of the upload propagate as the send's would; media gone from the store
        fails the message for good, a store that cannot be read now is retried.
        """
        media_id = uploaded_media_id(body)
        if media_id is None:
            return body
        try:
            media = await self.library.get(company_id, media_id)
        except MediaNotFound as exc:
            raise PermanentSendError(f"media {media_id} is no longer stored (expired or deleted): upload it again",
                                     code="MEDIA_NOT_FOUND", title="Uploaded media not found") from exc
        try:
            async with self.library.local_copy(media) as path:
                with path.open("rb") as handle:
                    graph_id = await self.client.upload_media(creds, handle, media.mime_type,
                                                              media.filename or media.id)
        except BlobMissing as exc:
            raise PermanentSendError(f"the bytes of media {media_id} are no longer stored: upload it again",
                                     code="MEDIA_NOT_FOUND", title="Uploaded media not found") from exc
        except MediaStoreError as exc:
            raise RetryableSendError(f"could not read media {media_id} from the media store: {exc}",
                                     code="MEDIA_STORE_UNAVAILABLE", title="Media store unavailable") from exc
        kind = str(body["type"])
        content = body[kind]
        assert isinstance(content, dict)
        return {**body, kind: {**content, "id": graph_id}}
