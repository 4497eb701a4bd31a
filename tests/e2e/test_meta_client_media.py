"""The client's media calls and both transport profiles, against the spawned emulator."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.errors import PermanentGraphError, PhoneAuthError
from bisnesgpt.engines.meta.profiles import Credentials
from tests.support.meta import EmulatorProc

pytestmark = pytest.mark.e2e

PHONE = "500000000000001"
D360_PHONE = "500000000000002"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProc]:
    emu = EmulatorProc(tmp_path_factory.mktemp("media"), phones=[f"{PHONE}:meta-token"])
    try:
        emu.add_phone(D360_PHONE, d360_api_key="d360-secret")
        yield emu
    finally:
        emu.close()


def meta_creds(emulator: EmulatorProc, token: str = "meta-token", version: str = "v23.0") -> Credentials:
    return Credentials("meta", emulator.url, token, PHONE, version)


def d360_creds(emulator: EmulatorProc, key: str = "d360-secret") -> Credentials:
    return Credentials("d360", emulator.url, key, None)


@pytest.mark.parametrize("profile", ["meta", "d360"])
async def test_upload_retrieve_download_delete(emulator: EmulatorProc, profile: str) -> None:
    creds = meta_creds(emulator) if profile == "meta" else d360_creds(emulator)
    async with CloudApiClient() as client:
        media_id = await client.upload_media(creds, PNG, "image/png", "logo.png")
        assert media_id.isdigit()
        info = await client.retrieve_media(creds, media_id)
        assert (info.id, info.mime_type, info.file_size) == (media_id, "image/png", len(PNG))
        assert info.sha256 == hashlib.sha256(PNG).hexdigest()
        assert "/whatsapp_business/attachments/" in info.url and "ext=" in info.url and "hash=" in info.url
        assert await client.download_media(creds, info.url) == PNG
        _, content = await client.download_media_by_id(creds, media_id)
        assert content == PNG
        sent = await client.send_message(creds, {"messaging_product": "whatsapp", "recipient_type": "individual",
                                                 "to": "60199990001", "type": "image",
                                                 "image": {"id": media_id, "caption": "ours"}})
        assert sent.wamid.startswith("wamid.")
        assert await client.delete_media(creds, media_id) is True
        with pytest.raises(PermanentGraphError) as gone:
            await client.retrieve_media(creds, media_id)
        assert (gone.value.code, gone.value.subcode) == (100, 33)
    uploads = [r for r in emulator.requests(operation="media_upload") if r["media_id"] == media_id]
    assert uploads[0]["profile"] == profile


async def test_download_needs_the_phones_credentials_and_expires(emulator: EmulatorProc) -> None:
    async with CloudApiClient() as client:
        media_id = await client.upload_media(meta_creds(emulator), b"%PDF-1.7 tiny", "application/pdf", "a.pdf")
        info = await client.retrieve_media(meta_creds(emulator), media_id)
        # The second hop without a token, or with another phone's token, is refused.
        assert httpx.get(info.url).status_code == 401
        with pytest.raises(PhoneAuthError):
            await client.download_media(meta_creds(emulator, token="someone-else"), info.url)
        tampered = info.url.replace("hash=", "hash=0")
        with pytest.raises(PermanentGraphError):
            await client.download_media(meta_creds(emulator), tampered)
        emulator.admin("PATCH", "/config", json={"media_url_ttl": -1})
        try:
            expired = await client.retrieve_media(meta_creds(emulator), media_id)
            with pytest.raises(PermanentGraphError) as error:
                await client.download_media(meta_creds(emulator), expired.url)
            assert error.value.http_status == 404
        finally:
            emulator.admin("PATCH", "/config", json={"media_url_ttl": 300})


async def test_any_graph_version_and_mark_as_read(emulator: EmulatorProc) -> None:
    async with CloudApiClient() as client:
        for version in ("v19.0", "v23.0", "v99.9"):
            assert await client.mark_as_read(meta_creds(emulator, version=version), "wamid.abc") is True
        assert await client.mark_as_read(d360_creds(emulator), "wamid.def", typing_indicator=True) is True
        with pytest.raises(PhoneAuthError):
            await client.mark_as_read(d360_creds(emulator, key="wrong"), "wamid.x")
    paths = {r["path"] for r in emulator.requests(operation="mark_read")}
    assert {f"/{v}/{PHONE}/messages" for v in ("v19.0", "v23.0", "v99.9")} | {"/messages"} <= paths


async def test_unknown_objects_and_paths(emulator: EmulatorProc, tmp_path: Path) -> None:
    async with CloudApiClient() as client:
        with pytest.raises(PermanentGraphError) as unknown:
            await client.retrieve_media(meta_creds(emulator), "123456789012345")
        assert (unknown.value.code, unknown.value.subcode, unknown.value.http_status) == (100, 33, 400)
        stranger = Credentials("meta", emulator.url, "t", "42", "v23.0")
        with pytest.raises(PermanentGraphError) as no_phone:
            await client.send_message(stranger, {"messaging_product": "whatsapp", "to": "60199990002",
                                                 "type": "text", "text": {"body": "x"}})
        assert (no_phone.value.code, no_phone.value.subcode) == (100, 33)
    response = httpx.post(f"{emulator.url}/v23.0/{PHONE}/not_an_edge", headers={"Authorization": "Bearer x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == 2500
