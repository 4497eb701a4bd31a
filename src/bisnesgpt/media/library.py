"""Media objects: storing a stream for a company, finding and reading it, and retention.

``MediaLibrary`` joins the store (bytes by company and sha256) with the ``media_objects``
rows (what each arrival was called, where it came from, when it expires). Storing takes
the blob's advisory lock in the row's transaction, and so does retention before it deletes
bytes no row uses any more: a file stored again while its old copy expires keeps its bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, TypedDict

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import NotFound
from bisnesgpt.core.ids import uuid7
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.db.records import RowRecord
from bisnesgpt.media.filesystem import FilesystemMediaStore
from bisnesgpt.media.s3 import S3MediaStore
from bisnesgpt.media.store import MediaStore, UnsupportedMediaType, resolve_type, spool

SQL = load_queries("bisnesgpt.media")

MediaOrigin = Literal["inbound", "upload"]
MediaState = Literal["pending", "stored", "failed", "expired"]
RETENTION_BATCH = 500


class MediaNotFound(NotFound):
    """No media object with this id for the caller's company."""


def new_media_id() -> str:
    """A media object id: ``med_`` and a UUIDv7's hex digits."""
    return f"med_{uuid7().hex}"


@dataclass(frozen=True)
class MediaObject(RowRecord):
    """One ``media_objects`` row."""

    id: str
    company_id: str
    sha256: str
    size_bytes: int
    mime_type: str
    filename: str | None
    origin: str
    created_at: datetime
    expires_at: datetime | None


class MediaJson(TypedDict):
    """``data.media`` of message events and the media routes' answer."""

    id: str | None
    url: str | None
    mime_type: str | None
    size: int | None
    sha256: str | None
    filename: str | None
    state: MediaState
    error: str | None


class RetentionResult(TypedDict):
    """What one retention pass deleted."""

    objects: int
    blobs: int


def build_store(settings: Settings) -> MediaStore:
    """The configured store: S3 when MEDIA_S3_BUCKET is set, else files under DATA_DIR/media."""
    root = settings.data_dir / "media"
    if settings.media_s3_bucket:
        return S3MediaStore(settings, root / ".spool")
    return FilesystemMediaStore(root)


class MediaLibrary:
    """Stores, finds, reads and expires media objects (see module docstring)."""

    def __init__(self, db: Database, store: MediaStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.max_bytes = settings.media_max_bytes
        self.retention = timedelta(days=settings.media_retention_days) if settings.media_retention_days else None

    async def ingest(self, company_id: str, chunks: AsyncIterable[bytes], *, origin: MediaOrigin,
                     filename: str | None = None, declared_type: str | None = None,
                     media_id: str | None = None, max_bytes: int | None = None,
                     allowed_types: frozenset[str] | None = None) -> MediaObject:
        """Spool ``chunks``, store the bytes under the company (once per sha256), and record the object.

        MediaTooLarge past the limit; UnsupportedMediaType when ``allowed_types`` does not
        have the detected type. Nothing is kept then.
        """
        spooled = await spool(chunks, self.store.spool_dir, max_bytes or self.max_bytes)
        mime = resolve_type(spooled.detected_type, declared_type)
        try:
            if allowed_types is not None and mime not in allowed_types:
                raise UnsupportedMediaType(f"{mime} is not a media type WhatsApp accepts (images, video, audio, "
                                           "PDF and office documents, text)", extra={"mimeType": mime})
            async with self.db.transaction() as conn:
                await conn.execute(SQL.lock_blob, company_id, spooled.sha256)
                if await self.store.exists(company_id, spooled.sha256):
                    spooled.discard()
                else:
                    await self.store.put(company_id, spooled, mime)
                row = await conn.fetchrow(SQL.insert_media_object, media_id or new_media_id(), company_id,
                                          spooled.sha256, spooled.size, mime, filename, origin,
                                          self.retention.total_seconds() if self.retention else None)
        finally:
            spooled.discard()
        assert row is not None
        return MediaObject.from_row(row)

    async def get(self, company_id: str, media_id: str) -> MediaObject:
        """The company's media object (MediaNotFound for an unknown id or another company's)."""
        found = await MediaObject.fetch_one(self.db, SQL.get_media_object, media_id, company_id)
        if found is None:
            raise MediaNotFound(f"no media {media_id!r} for this company: use an id from an upload or a "
                                "message's media", extra={"mediaId": media_id})
        return found

    async def get_any_company(self, media_id: str) -> MediaObject | None:
        """A media object by id alone (a signed URL's signature then names the company)."""
        return await MediaObject.fetch_one(self.db, SQL.get_media_object_any_company, media_id)

    def read(self, media: MediaObject, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes ``start``..``end`` (inclusive), streamed."""
        return self.store.read(media.company_id, media.sha256, start, end)

    @asynccontextmanager
    async def local_copy(self, media: MediaObject) -> AsyncIterator[Path]:
        """The object's bytes in a temporary file (streamed there from the store), deleted afterwards.

        For handing the bytes to a client that reads a file (a multipart upload) without
        holding them in memory.
        """
        spooled = await spool(self.read(media), self.store.spool_dir, max(media.size_bytes, 1))
        try:
            yield spooled.path
        finally:
            spooled.discard()

    async def expire(self) -> RetentionResult:
        """Delete expired objects (and bytes no object uses any more); their messages become ``expired``."""
        objects = blobs = 0
        while True:
            async with self.db.transaction() as conn:
                rows = await conn.fetch(SQL.delete_expired_media_objects, RETENTION_BATCH)
                if not rows:
                    break
                objects += len(rows)
                await conn.execute(SQL.mark_messages_media_expired, [r["id"] for r in rows])
                for company_id, sha256 in sorted({(r["company_id"], r["sha256"]) for r in rows}):
                    await conn.execute(SQL.lock_blob, company_id, sha256)
                    if not await conn.fetchval(SQL.blob_in_use, company_id, sha256):
                        await self.store.delete(company_id, sha256)
                        blobs += 1
            if len(rows) < RETENTION_BATCH:
                break
        return {"objects": objects, "blobs": blobs}
