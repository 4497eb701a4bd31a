"""The embedded default media store: files under ``DATA_DIR/media/<company>/<sha[:2]>/<sha>``.

A spooled file is renamed into place (the spool folder is on the same disk), so storing
is atomic: a reader sees the whole file or none. Reads go through a thread per chunk so a
slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from bisnesgpt.media.store import CHUNK_BYTES, BlobMissing, MediaStoreError, Spooled, check_blob_name


class FilesystemMediaStore:
    """Media bytes as files under ``root`` (see module docstring)."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def spool_dir(self) -> Path:
        """``<root>/.spool``: the same filesystem as the files, so a rename moves a spooled file in."""
        return self.root / ".spool"

    def path_of(self, company_id: str, sha256: str) -> Path:
        """Where the bytes of (company, sha256) are kept."""
        check_blob_name(company_id, sha256)
        return self.root / company_id / sha256[:2] / sha256

    async def open(self) -> None:
        """Create the folder (nothing to connect)."""
        self.root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing to close."""

    async def put(self, company_id: str, spooled: Spooled, mime_type: str) -> None:
        """Rename the spooled file into place (an existing copy of the same bytes is kept)."""
        target = self.path_of(company_id, spooled.sha256)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(spooled.path, target)
        except OSError as exc:
            spooled.discard()
            raise MediaStoreError(f"could not store media on disk: {exc}") from exc

    async def exists(self, company_id: str, sha256: str) -> bool:
        """Whether the file is there."""
        return self.path_of(company_id, sha256).is_file()

    async def read(self, company_id: str, sha256: str, start: int = 0, end: int | None = None) \
            -> AsyncIterator[bytes]:
        """The file's bytes ``start``..``end`` (inclusive), a chunk at a time."""
        path = self.path_of(company_id, sha256)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobMissing("the media's bytes are no longer stored") from exc
        try:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, company_id: str, sha256: str) -> None:
        """Remove the file."""
        self.path_of(company_id, sha256).unlink(missing_ok=True)
