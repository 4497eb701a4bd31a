"""What both engines share about inbound media downloads: the job, the message's media state, events.

An inbound media message gets its media object id when it is stored (``begin``, in the
message's transaction, so the ``message.inbound`` event already names the id and a signed
URL); a ``media-downloads`` job fetches the bytes later and ``finish`` records the outcome,
``stored`` or ``failed`` with the reason, writing a ``message.media`` event in the same
transaction. The engine-specific part — how bytes are fetched — is the engine's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import asyncpg

from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord, RowSource
from bisnesgpt.media.library import MediaJson, MediaObject, MediaState, new_media_id
from bisnesgpt.media.signing import MediaUrlSigner

SQL = load_queries("bisnesgpt.media")

MEDIA_MESSAGE_TYPES = frozenset({"image", "video", "audio", "voice", "ptt", "document", "sticker"})


class MediaDownloadJob(TypedDict):
    """A ``media-downloads`` job: the message (its row id) whose media is fetched."""

    kind: Literal["media-download"]
    messagePk: int
    companyId: str
    mediaObjectId: str


@dataclass(frozen=True)
class MediaMessage(RowRecord):
    """The message row a download is for."""

    id: int
    message_id: str
    company_id: str
    phone_index: int
    chat_id: str
    external_id: str | None
    provider: str
    message_type: str
    media_id: str | None
    media_mime_type: str | None
    media_filename: str | None
    media_object_id: str | None
    media_state: str | None
    media_error: str | None


def pending_media(signer: MediaUrlSigner, company_id: str, media_id: str, *, mime_type: str | None,
                  filename: str | None) -> MediaJson:
    """``data.media`` of an inbound message whose download has not finished."""
    return {"id": media_id, "url": signer.url(media_id, company_id), "mime_type": mime_type, "size": None,
            "sha256": None, "filename": filename, "state": "pending", "error": None}


def stored_media(signer: MediaUrlSigner, media: MediaObject) -> MediaJson:
    """``data.media`` of stored media."""
    return {"id": media.id, "url": signer.url(media.id, media.company_id), "mime_type": media.mime_type,
            "size": media.size_bytes, "sha256": media.sha256, "filename": media.filename, "state": "stored",
            "error": None}


async def begin(conn: asyncpg.Connection, message_pk: int) -> str:
    """Give the inbound message ``message_pk`` a media object id, its download pending; the id."""
    media_id = new_media_id()
    await conn.execute(SQL.begin_media_download, message_pk, media_id)
    return media_id


def job_for(message_pk: int, company_id: str, media_id: str) -> MediaDownloadJob:
    """The job that downloads the message's media."""
    return {"kind": "media-download", "messagePk": message_pk, "companyId": company_id, "mediaObjectId": media_id}


async def load(conn: RowSource, message_pk: int) -> MediaMessage | None:
    """The message of a download job (None when it is gone)."""
    return await MediaMessage.fetch_one(conn, SQL.media_message, message_pk)


async def finish(conn: asyncpg.Connection, message: MediaMessage, state: MediaState, error: str | None) -> bool:
    """Record the download's outcome (True when this call ended the pending download)."""
    return await conn.fetchval(SQL.finish_media_download, message.id, state, error) is not None


async def pending_download_of(conn: RowSource, company_id: str, phone_index: int,
                              external_id: str) -> tuple[int, str] | None:
    """The row id and media id of a redelivered inbound message whose download has not ended."""
    row = await conn.fetchrow(SQL.pending_download_of, company_id, phone_index, external_id)
    return (int(row["id"]), str(row["media_object_id"])) if row is not None else None


async def inbound_exists(conn: RowSource, company_id: str, phone_index: int, external_id: str) -> bool:
    """Whether the inbound message is stored already (a redelivery: nothing to download)."""
    row = await conn.fetchrow(SQL.inbound_exists, company_id, phone_index, external_id)
    return bool(row is not None and row["found"])


async def set_media(conn: asyncpg.Connection, message_pk: int, media_id: str | None, state: MediaState,
                    error: str | None) -> None:
    """Record media fetched before its message was stored: the object (None when it failed) and the state."""
    await conn.execute(SQL.set_message_media, message_pk, media_id, state, error)
