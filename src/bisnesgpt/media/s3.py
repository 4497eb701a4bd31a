"""The production media store: an S3-compatible bucket (AWS S3, MinIO, R2, …) through aiobotocore.

Objects are ``<MEDIA_S3_PREFIX><company>/<sha256>``. A spooled file is uploaded with one
PUT up to ``PART_BYTES`` and as a multipart upload above it (one part in memory at a
time; a failed upload is aborted so no parts linger); reads are ranged GETs streamed a
chunk at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bisnesgpt.config import Settings
from bisnesgpt.media.store import CHUNK_BYTES, BlobMissing, MediaStoreError, Spooled, check_blob_name

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

PART_BYTES = 8 * 1024 * 1024  # S3's minimum part is 5 MiB
_MISSING_CODES = ("404", "NoSuchKey", "NotFound")


class S3MediaStore:
    """Media bytes as objects in one bucket (see module docstring)."""

    name = "s3"

    def __init__(self, settings: Settings, spool_dir: Path) -> None:
        if not settings.media_s3_bucket:
            raise ValueError("S3MediaStore needs MEDIA_S3_BUCKET")
        self.bucket = settings.media_s3_bucket
        self.prefix = settings.media_s3_prefix
        self._settings = settings
        self._spool_dir = spool_dir
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    @property
    def spool_dir(self) -> Path:
        """A local folder for streams being received (under DATA_DIR)."""
        return self._spool_dir

    def key_of(self, company_id: str, sha256: str) -> str:
        """The object key of (company, sha256)."""
        check_blob_name(company_id, sha256)
        return f"{self.prefix}{company_id}/{sha256}"

    async def open(self) -> None:
        """Create the client (no request is made: a bucket that is away shows at the first use)."""
        # Imported here: aiobotocore takes seconds to import on a busy machine, and only S3 setups need it.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        settings = self._settings
        key_id, secret = settings.media_s3_access_key_id, settings.media_s3_secret_access_key
        self._client = await self._stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=settings.media_s3_url, region_name=settings.media_s3_region,
            aws_access_key_id=key_id.get_secret_value() if key_id else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                             connect_timeout=10, read_timeout=60)))

    async def close(self) -> None:
        """Close the client's connections."""
        self._client = None
        await self._stack.aclose()

    @property
    def client(self) -> S3Client:
        """The open client (RuntimeError before ``open``)."""
        if self._client is None:
            raise RuntimeError("S3MediaStore is not open")
        return self._client

    async def put(self, company_id: str, spooled: Spooled, mime_type: str) -> None:
        """Upload the spooled file (single PUT or multipart), then delete it."""
        key = self.key_of(company_id, spooled.sha256)
        try:
            if spooled.size <= PART_BYTES:
                body = await asyncio.to_thread(spooled.path.read_bytes)
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=mime_type)
            else:
                await self._put_multipart(key, spooled.path, mime_type)
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreError(f"could not store media in S3 bucket {self.bucket}: {exc}") from exc
        finally:
            spooled.discard()

    async def _put_multipart(self, key: str, path: Path, mime_type: str) -> None:
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=mime_type)
        upload_id = upload["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            with path.open("rb") as handle:
                number = 1
                while part := await asyncio.to_thread(handle.read, PART_BYTES):
                    answer = await self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                           PartNumber=number, Body=part)
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    number += 1
            await self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                        MultipartUpload={"Parts": parts})
        except BaseException:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    async def exists(self, company_id: str, sha256: str) -> bool:
        """A HEAD of the object."""
        try:
            await self.client.head_object(Bucket=self.bucket, Key=self.key_of(company_id, sha256))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES:
                return False
            raise MediaStoreError(f"S3 HEAD failed: {exc}") from exc
        except BotoCoreError as exc:
            raise MediaStoreError(f"S3 HEAD failed: {exc}") from exc
        return True

    async def read(self, company_id: str, sha256: str, start: int = 0, end: int | None = None) \
            -> AsyncIterator[bytes]:
        """A ranged GET, streamed in chunks."""
        ranged = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self.key_of(company_id, sha256),
                                                  Range=ranged)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES:
                raise BlobMissing("the media's bytes are no longer stored") from exc
            raise MediaStoreError(f"S3 GET failed: {exc}") from exc
        except BotoCoreError as exc:
            raise MediaStoreError(f"S3 GET failed: {exc}") from exc
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk

    async def delete(self, company_id: str, sha256: str) -> None:
        """DELETE the object (S3 answers success for a missing one)."""
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=self.key_of(company_id, sha256))
        except (BotoCoreError, ClientError) as exc:
            raise MediaStoreError(f"S3 DELETE failed: {exc}") from exc
