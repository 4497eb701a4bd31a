"""Downloading inbound Cloud API media: the processor of the ``media-downloads`` queue.

Each try retrieves the media object with the phone's credentials (Meta's URL expires in
minutes, the id lasts for days), then streams the URL's bytes into the media library. A
try that fails for a reason a later one may not have (network, 5xx, throttling, a URL that
expired between the two hops, credentials an operator may fix) is retried by bullmq with
exponential backoff (``MEDIA_DOWNLOAD_ATTEMPTS``, ``MEDIA_DOWNLOAD_BACKOFF_MS``); the last
try, or a permanent refusal (unknown media id, over ``MEDIA_MAX_BYTES``), records
``failed`` with the reason on the message. Either ending writes a ``message.media`` event.
A job for a message whose download already ended does nothing, so duplicates are harmless.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TypedDict

from bullmq.custom_errors import UnrecoverableError

from bisnesgpt.config import Settings
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import BisnesgptError, PayloadTooLarge
from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import CloudApiError, PermanentGraphError, PhoneAuthError
from bisnesgpt.engines.meta.phones import PhoneCache
from bisnesgpt.engines.meta.profiles import credentials_for_phone
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.media import downloads
from bisnesgpt.media.downloads import MediaMessage
from bisnesgpt.media.library import MediaJson, MediaLibrary, MediaNotFound, MediaObject
from bisnesgpt.media.signing import MediaUrlSigner
from bisnesgpt.messaging.events import MESSAGE_MEDIA, record_tenant_event
from bisnesgpt.messaging.queues import MEDIA_DOWNLOADS, QueueSpec
from bisnesgpt.messaging.send_processor import JobHandle

log = logging.getLogger(__name__)


class DownloadResult(TypedDict):
    """What a ``media-downloads`` job answers."""

    outcome: str


class DownloadFailed(BisnesgptError):
    """This try did not get the bytes; ``permanent``: no later try will."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.permanent = permanent


def media_downloads_spec(settings: Settings) -> QueueSpec:
    """The ``media-downloads`` queue with the configured tries and backoff."""
    return dataclasses.replace(MEDIA_DOWNLOADS, attempts=settings.media_download_attempts,
                               backoff={"type": "exponential", "delay": settings.media_download_backoff_ms},
                               concurrency=settings.media_download_concurrency)


def media_event_data(message: MediaMessage, media: MediaJson) -> dict[str, object]:
    """The ``message.media`` event's data."""
    return {"message_id": message.message_id, "external_id": message.external_id, "chat_id": message.chat_id,
            "provider": message.provider, "type": message.message_type, "media": media}


class MetaMediaDownloader:
    """Processor of ``media-downloads`` jobs (see module docstring)."""

    def __init__(self, db: Database, client: CloudApiClient, library: MediaLibrary, signer: MediaUrlSigner,
                 box: SecretBox, settings: Settings, events: EventRecorder) -> None:
        self.db = db
        self.client = client
        self.library = library
        self.signer = signer
        self.box = box
        self.settings = settings
        self.events = events
        self.phones = PhoneCache(db)
        self.attempts = settings.media_download_attempts
        self.processed = 0

    async def __call__(self, job: JobHandle, token: str) -> DownloadResult:
        """bullmq's processor contract: one try at the job's download."""
        data: JsonObject = job.data or {}
        pk = data.get("messagePk")
        if not isinstance(pk, int):
            raise UnrecoverableError("media-downloads job without messagePk")
        message = await downloads.load(self.db, pk)
        if message is None or message.media_state != "pending" or not message.media_object_id:
            return {"outcome": "nothing to do"}
        try:
            media = await self._fetch(message, message.media_object_id)
        except DownloadFailed as exc:
            last = exc.permanent or job.attemptsMade + 1 >= self.attempts
            if not last:
                raise  # bullmq tries again after the backoff
            await self._finish(message, None, exc.detail)
            self.processed += 1
            raise UnrecoverableError(exc.detail) from exc
        await self._finish(message, media, None)
        self.processed += 1
        return {"outcome": "stored"}

    async def _fetch(self, message: MediaMessage, media_id: str) -> MediaObject:
        try:
            return await self.library.get(message.company_id, media_id)  # a try that stored it, then died
        except MediaNotFound:
            pass
        phone = await self.phones.get(message.company_id, message.phone_index)
        if phone is None:
            raise DownloadFailed("the phone that received the message is no longer configured", permanent=True)
        if not message.media_id:
            raise DownloadFailed("the message names no provider media id", permanent=True)
        try:
            creds = credentials_for_phone(self.settings, self.box, phone)
            info = await self.client.retrieve_media(creds, message.media_id)
        except PhoneAuthError as exc:
            raise DownloadFailed(f"the phone's credentials were refused: {exc.detail}", permanent=False) from exc
        except PermanentGraphError as exc:
            raise DownloadFailed(f"the Cloud API refused the media id: {exc.detail}", permanent=True) from exc
        except BisnesgptError as exc:
            raise DownloadFailed(f"retrieving the media URL failed: {exc.detail}", permanent=False) from exc
        if info.file_size is not None and info.file_size > self.library.max_bytes:
            raise DownloadFailed(f"media of {info.file_size} bytes is over MEDIA_MAX_BYTES "
                                 f"({self.library.max_bytes})", permanent=True)
        try:
            async with self.client.stream_media(creds, info.url) as chunks:
                media = await self.library.ingest(
                    message.company_id, chunks, origin="inbound", media_id=media_id,
                    filename=message.media_filename, declared_type=info.mime_type or message.media_mime_type)
        except PayloadTooLarge as exc:
            raise DownloadFailed(exc.detail, permanent=True) from exc
        except CloudApiError as exc:  # an expired URL included: the next try retrieves a fresh one
            raise DownloadFailed(f"downloading the media failed: {exc.detail}", permanent=False) from exc
        except BisnesgptError as exc:
            raise DownloadFailed(f"storing the media failed: {exc.detail}", permanent=False) from exc
        if info.sha256 and info.sha256.lower() != media.sha256:
            log.warning("media %s: Cloud API sha256 %s, downloaded bytes %s", media_id, info.sha256, media.sha256)
        return media

    async def _finish(self, message: MediaMessage, media: MediaObject | None, error: str | None) -> None:
        if media is not None:
            described = downloads.stored_media(self.signer, media)
        else:
            described = downloads.pending_media(self.signer, message.company_id, message.media_object_id or "",
                                                mime_type=message.media_mime_type,
                                                filename=message.media_filename)
            described["state"], described["error"], described["url"] = "failed", error, None
        async with self.db.transaction() as conn:
            if await downloads.finish(conn, message, described["state"], error):
                await record_tenant_event(conn, company_id=message.company_id, phone_index=message.phone_index,
                                          type=MESSAGE_MEDIA, data=media_event_data(message, described))
        if media is None:
            await self.events.record("media.download_failed", {
                "companyId": message.company_id, "messageId": message.message_id, "error": error}, "warning")
