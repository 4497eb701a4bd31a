"""Inbound WhatsApp-Web media: the driver's download, stored in the media library before the message.

The bytes come through the session that received the message (whatsmeow decrypts them
with the message's media key; the sandbox serves them from its media server), so they are
fetched while the message is in hand, before it is stored and confirmed to WhatsApp: a
process that dies meanwhile never confirmed it, and WhatsApp delivers it again. A few
tries with a short backoff; a download that still fails stores the message with
``media_state = failed`` and the reason, and nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bisnesgpt.core.errors import BisnesgptError, PayloadTooLarge
from bisnesgpt.engines.wwebjs.driver_events import InboundMedia
from bisnesgpt.media.library import MediaLibrary, MediaObject
from bisnesgpt.media.signing import MediaUrlSigner

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class KeptMedia:
    """How an inbound download ended: the stored object, or why there is none."""

    media: MediaObject | None
    error: str | None


class InboundMediaKeeper:
    """Downloads an inbound message's media through its driver into the media library."""

    def __init__(self, library: MediaLibrary, signer: MediaUrlSigner,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.library = library
        self.signer = signer
        self.retry_delays = retry_delays

    async def keep(self, company_id: str, media: InboundMedia) -> KeptMedia:
        """Store the media's bytes for the company (tries again after each delay); the outcome."""
        if media.download is None:
            return KeptMedia(None, "this driver cannot download media")
        error = "not tried"
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                stored = await self.library.ingest(company_id, media.download(), origin="inbound",
                                                   filename=media.filename, declared_type=media.mime_type)
            except PayloadTooLarge as exc:
                return KeptMedia(None, exc.detail)
            except BisnesgptError as exc:
                error = exc.detail
                log.warning("inbound media for %s not downloaded (%s)", company_id, error)
                continue
            return KeptMedia(stored, None)
        return KeptMedia(None, error)
