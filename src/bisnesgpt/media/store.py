"""The media store interface, and spooling a stream into a file while hashing it.

Bytes are kept per company under their sha256 (content-addressed: the same file received
twice is stored once). Nothing here holds a whole file in memory: an incoming stream is
spooled chunk by chunk into a temporary file (hashed and counted as it goes, refused past
the size limit), then handed to the backend, which moves it into place (filesystem) or
uploads it in parts (S3); reads are ranges of chunks.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import magic

from bisnesgpt.core.errors import BisnesgptError, PayloadTooLarge

CHUNK_BYTES = 256 * 1024
HEAD_BYTES = 8192
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What libmagic answers when it cannot tell: the sender's declared type is kept then.
GENERIC_TYPES = frozenset({"application/octet-stream", "application/zip", "application/x-empty", "text/plain"})


class MediaTooLarge(PayloadTooLarge):
    """The media is over MEDIA_MAX_BYTES."""


class MediaStoreError(BisnesgptError):
    """The media store could not read or write (disk, S3): a later try may work."""


class BlobMissing(MediaStoreError):
    """The store has no bytes under this company and sha256 (expired, or deleted by hand)."""


@dataclass(frozen=True)
class Spooled:
    """A stream spooled to a temporary file: where, its sha256 (hex), size and detected type."""

    path: Path
    sha256: str
    size: int
    detected_type: str

    def discard(self) -> None:
        """Delete the temporary file (if the backend did not take it)."""
        self.path.unlink(missing_ok=True)


def check_blob_name(company_id: str, sha256: str) -> None:
    """A blob is named by a company id and a hex sha256; anything else never reaches a path or key."""
    if not _SHA256.match(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    if not company_id or company_id in (".", "..") or "/" in company_id or "\\" in company_id or "\0" in company_id:
        raise ValueError("company id cannot name a media folder")


def detect_type(head: bytes) -> str:
    """The MIME type libmagic reads from a file's first bytes."""
    return str(magic.from_buffer(head, mime=True) or "application/octet-stream")


def resolve_type(detected: str, declared: str | None) -> str:
    """The type to keep: what the bytes are, unless libmagic could only say "some bytes"."""
    declared = (declared or "").split(";", 1)[0].strip().lower() or None
    if detected in GENERIC_TYPES and declared:
        return declared
    return detected


class _SpoolFile:
    """A new temporary file that hashes, counts and keeps the head of what is written to it."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix="spool-", suffix=".part")
        self.path = Path(name)
        self.handle = os.fdopen(fd, "wb")
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise MediaTooLarge(f"media is larger than the {self.max_bytes} byte limit (MEDIA_MAX_BYTES)",
                                extra={"limit": self.max_bytes})
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.digest.update(chunk)
        self.handle.write(chunk)

    def finish(self) -> Spooled:
        self.handle.close()
        return Spooled(self.path, self.digest.hexdigest(), self.size, detect_type(self.head))

    def abandon(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


async def spool(chunks: AsyncIterable[bytes], directory: Path, max_bytes: int) -> Spooled:
    """Write ``chunks`` into a new file in ``directory``, hashing and counting; MediaTooLarge past the limit."""
    target = _SpoolFile(directory, max_bytes)
    try:
        async for chunk in chunks:
            if chunk:
                target.write(chunk)
        return target.finish()
    except BaseException:
        target.abandon()
        raise


class MediaStore(Protocol):
    """Where media bytes live, by company and sha256."""

    name: str

    @property
    def spool_dir(self) -> Path:
        """Where incoming streams are spooled before ``put`` (on the same disk, for the filesystem)."""
        ...

    async def open(self) -> None:
        """Connect (S3's client); nothing for the filesystem."""

    async def close(self) -> None:
        """Disconnect."""

    async def put(self, company_id: str, spooled: Spooled, mime_type: str) -> None:
        """Keep the spooled file's bytes under (company, sha256); the temporary file is consumed."""

    async def exists(self, company_id: str, sha256: str) -> bool:
        """Whether bytes are stored under (company, sha256)."""
        ...

    def read(self, company_id: str, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The stored bytes ``start``..``end`` (inclusive; None = to the end), in chunks; BlobMissing if none."""
        ...

    async def delete(self, company_id: str, sha256: str) -> None:
        """Forget the bytes (nothing when there are none)."""


class UnsupportedMediaType(BisnesgptError):
    """The bytes are of a type WhatsApp does not accept."""


class RangeNotSatisfiable(BisnesgptError):
    """A Range past the end of the media."""


# What the Cloud API accepts for sending (images, video, audio, documents, stickers).
SENDABLE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/webp", "video/mp4", "video/3gpp", "audio/aac", "audio/amr", "audio/mpeg",
    "audio/mp4", "audio/ogg", "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})
