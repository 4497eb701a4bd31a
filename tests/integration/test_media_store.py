"""The media library on both stores: the filesystem under DATA_DIR and S3 (a real moto server).

Every test runs once per backend with the same assertions: bytes come back identical
(sha256), ranges are exact, a company sees only its own media, the size limit holds with
nothing left behind, the same bytes are stored once, and retention deletes expired objects
(bytes only when no object uses them) and marks their messages.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from pydantic import SecretStr

from bisnesgpt.config import Settings
from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.health.maintenance import Maintenance
from bisnesgpt.media.library import MediaLibrary, MediaNotFound, build_store
from bisnesgpt.media.store import MediaTooLarge
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, moto_server
from tests.support.servers import unique_name

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + os.urandom(300_000) + b"\n%%EOF\n"


@pytest.fixture(scope="session")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(params=["filesystem", "s3"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    base = Settings(data_dir=tmp_path / "data", media_max_bytes=40 * 1024 * 1024, media_retention_days=30)
    if request.param == "filesystem":
        yield base
        return
    url = request.getfixturevalue("s3_url")
    bucket = unique_name("media").replace("_", "-").lower()
    async with get_session().create_client("s3", endpoint_url=url, region_name="us-east-1",
                                           aws_access_key_id=ACCESS_KEY,
                                           aws_secret_access_key=SECRET_KEY) as client:
        await client.create_bucket(Bucket=bucket)
    yield base.model_copy(update={"media_s3_bucket": bucket, "media_s3_url": url,
                                  "media_s3_access_key_id": SecretStr(ACCESS_KEY),
                                  "media_s3_secret_access_key": SecretStr(SECRET_KEY)})


@pytest.fixture
async def library(settings: Settings, db: Database) -> AsyncIterator[MediaLibrary]:
    for company in ("acme", "other"):
        await db.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", company)
    store = build_store(settings)
    await store.open()
    try:
        yield MediaLibrary(db, store, settings)
    finally:
        await store.close()


async def chunks_of(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def read_all(library: MediaLibrary, media_id: str, company: str = "acme", start: int = 0,
                   end: int | None = None) -> bytes:
    media = await library.get(company, media_id)
    return b"".join([chunk async for chunk in library.read(media, start, end)])


async def test_stored_bytes_come_back_identical_with_detected_type(library: MediaLibrary, settings: Settings) -> None:
    png = await library.ingest("acme", chunks_of(PNG), origin="inbound", filename="photo.png",
                               declared_type="application/octet-stream")
    pdf = await library.ingest("acme", chunks_of(PDF), origin="upload", filename="offer.pdf", declared_type=None)
    assert (png.mime_type, png.size_bytes, png.sha256) == ("image/png", len(PNG), hashlib.sha256(PNG).hexdigest())
    assert (pdf.mime_type, pdf.filename, pdf.origin) == ("application/pdf", "offer.pdf", "upload")
    assert await read_all(library, png.id) == PNG
    assert hashlib.sha256(await read_all(library, pdf.id)).hexdigest() == pdf.sha256
    assert pdf.expires_at is not None and (pdf.expires_at - pdf.created_at).days == settings.media_retention_days
    assert list(library.store.spool_dir.iterdir()) == []  # nothing spooled is left behind


async def test_ranges_are_exact(library: MediaLibrary) -> None:
    media = await library.ingest("acme", chunks_of(PDF), origin="upload")
    assert await read_all(library, media.id, start=0, end=0) == PDF[:1]
    assert await read_all(library, media.id, start=1000, end=299_999) == PDF[1000:300_000]
    assert await read_all(library, media.id, start=len(PDF) - 7) == PDF[-7:]


async def test_another_companys_media_is_not_found(library: MediaLibrary) -> None:
    media = await library.ingest("acme", chunks_of(PNG), origin="upload")
    with pytest.raises(MediaNotFound):
        await library.get("other", media.id)
    with pytest.raises(MediaNotFound):
        await library.get("acme", "med_unknown")


async def test_over_the_limit_is_refused_and_nothing_is_kept(library: MediaLibrary, db: Database) -> None:
    with pytest.raises(MediaTooLarge):
        await library.ingest("acme", chunks_of(PDF), origin="upload", max_bytes=100_000)
    assert await db.fetchval("SELECT count(*) FROM media_objects") == 0
    assert list(library.store.spool_dir.iterdir()) == []


async def test_same_bytes_are_stored_once_per_company(library: MediaLibrary) -> None:
    first = await library.ingest("acme", chunks_of(PNG), origin="inbound", filename="a.png")
    second = await library.ingest("acme", chunks_of(PNG, 1000), origin="upload", filename="b.png")
    theirs = await library.ingest("other", chunks_of(PNG), origin="upload")
    assert first.id != second.id and first.sha256 == second.sha256 == theirs.sha256
    assert (first.filename, second.filename) == ("a.png", "b.png")
    assert await read_all(library, theirs.id, company="other") == PNG


async def test_a_large_file_streams_through(library: MediaLibrary) -> None:
    # Above S3's single-PUT size here: the multipart path.
    block = os.urandom(1024 * 1024)
    data = block * 20

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield block

    media = await library.ingest("acme", stream(), origin="upload", filename="big.bin")
    assert media.size_bytes == len(data)
    digest = hashlib.sha256()
    async for chunk in library.read(media):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == media.sha256


async def test_retention_deletes_expired_objects_and_unused_bytes(library: MediaLibrary, db: Database) -> None:
    old = await library.ingest("acme", chunks_of(PNG), origin="inbound")
    kept_copy = await library.ingest("acme", chunks_of(PNG), origin="upload")
    alone = await library.ingest("acme", chunks_of(PDF), origin="inbound")
    for media in (old, alone):
        await db.execute("INSERT INTO messages (message_id, company_id, chat_id, message_type, direction, "
                         "media_object_id, media_state) VALUES ($1, 'acme', '1@c.us', 'image', 'inbound', $2, "
                         "'stored')", media.id, media.id)
    await db.execute("UPDATE media_objects SET expires_at = now() - interval '1 minute' WHERE id = ANY($1)",
                     [old.id, alone.id])
    assert await library.expire() == {"objects": 2, "blobs": 1}
    with pytest.raises(MediaNotFound):
        await library.get("acme", old.id)
    assert not await library.store.exists("acme", alone.sha256)
    assert await read_all(library, kept_copy.id) == PNG  # same bytes, still used by an object not expired
    states = await db.fetch("SELECT media_state FROM messages WHERE media_object_id = ANY($1)", [old.id, alone.id])
    assert [r["media_state"] for r in states] == ["expired", "expired"]
    assert await library.expire() == {"objects": 0, "blobs": 0}


async def test_the_maintenance_pass_expires_media(library: MediaLibrary, db: Database) -> None:
    media = await library.ingest("acme", chunks_of(PNG), origin="inbound")
    await db.execute("UPDATE media_objects SET expires_at = now() - interval '1 second' WHERE id = $1", media.id)
    maintenance = Maintenance(db, EventRecorder(db, "api"), interval=1.0, holder="test", media=library)
    result = await maintenance.run_once()
    assert (result["mediaObjectsDeleted"], result["mediaBlobsDeleted"]) == (1, 1)
    assert not await library.store.exists("acme", media.sha256)
