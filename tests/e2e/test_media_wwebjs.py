"""Inbound WhatsApp-Web media end to end: sandbox network → wwebjs (sandbox driver) → media store → api.

A simulated contact sends an image, a voice note and a 10 MB PDF (the sandbox's CLI and
its admin API, the bytes on its media server); the driver downloads them, the engine stores
them before the message, and the tenant fetches them back byte-identical by key and by
the signed URL in the ``message.inbound`` event. Another company gets 404.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.procs import clean_env
from tests.support.wwebjs import Db, company_key, seed_phone, start_api, start_sandbox, start_wwebjs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(30_000) + b"\xff\xd9"
OGG = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x1eOpusHead" + os.urandom(20_000)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(10 * 1024 * 1024) + b"\n%%EOF\n"


async def inbound_row(db: Db, external_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await db.fetchrow("SELECT * FROM messages WHERE external_id = $1 AND direction = 'inbound'",
                                external_id)
        return row if row is not None and row["media_state"] is not None else None
    return await eventually(check, timeout=90, what=f"inbound {external_id} stored")


async def test_inbound_media_from_the_sandbox_is_stored_and_fetched(tmp_path: Path, database_url: str,
                                                                    redis_url: str) -> None:
    await seed_phone(database_url, "acme", 0)
    await seed_phone(database_url, "rival", 0)
    key, rival_key = await company_key(database_url, "acme"), await company_key(database_url, "rival")
    sandbox = start_sandbox(tmp_path)
    procs = [sandbox.proc]
    try:
        wwebjs = start_wwebjs(tmp_path, database_url, redis_url, sandbox.url, WWEBJS_MEDIA_ALLOW_PRIVATE_URLS="true")
        procs.append(wwebjs.proc)
        api = start_api(tmp_path, database_url, redis_url)
        procs.append(api.proc)
        db = Db(database_url)
        await db.wait_status("acme", 0, "qr", timeout=60)
        await sandbox.scan("acme", 0, phone="60123450001")
        await db.wait_status("acme", 0, "ready", timeout=60)

        # The contact sends a PDF with the sandbox's CLI, as a developer would.
        pdf_path = tmp_path / "quote.pdf"
        pdf_path.write_bytes(PDF)
        cli = subprocess.run(
            [sys.executable, "-m", "bisnesgpt", "sandbox", "wweb", "inbound", "acme", "0", "--from", "60190000003",
             "--media", str(pdf_path), "--type", "document", "--mime", "application/pdf", "--url", sandbox.url],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        pdf_id = cli.stdout.split()[1]
        # An image and a voice note through the network's own API (upload, then the message).
        sent: dict[str, tuple[str, bytes, str]] = {"pdf": (pdf_id, PDF, "application/pdf")}
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=60) as net:
            for name, kind, data, mime in (("image", "image", JPEG, "image/jpeg"),
                                           ("voice", "audio", OGG, "audio/ogg")):
                uploaded = (await net.post("/media/upload", content=data, headers={"Content-Type": mime})).json()
                injected = await sandbox.inbound("acme", 0, **{"from": "60190000003", "type": kind,
                                                              "media": {**uploaded, "ptt": kind == "audio"}})
                sent[name] = (injected["id"], data, mime)

        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            for name, (external_id, data, mime) in sent.items():
                row = await inbound_row(db, external_id)
                assert row["media_state"] == "stored", (name, row["media_error"])
                media_id = row["media_object_id"]
                digest = hashlib.sha256(data).hexdigest()
                event = await db.fetchrow("SELECT data FROM tenant_events WHERE type = 'message.inbound' "
                                          "AND data->>'external_id' = $1", external_id)
                assert event is not None
                media = event["data"]["media"]
                assert (media["id"], media["state"], media["sha256"], media["size"]) == (media_id, "stored", digest,
                                                                                        len(data))
                assert media["mime_type"] == mime
                got = await http.get(f"/api/v1/media/{media_id}", headers={"Authorization": f"Bearer {key}"})
                assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest, name
                signed = await http.get(media["url"])
                assert signed.status_code == 200 and hashlib.sha256(signed.content).hexdigest() == digest, name
                theirs = await http.get(f"/api/v1/media/{media_id}", headers={"Authorization": f"Bearer {rival_key}"})
                assert theirs.status_code == 404
            pdf_row = await inbound_row(db, pdf_id)
            got = await http.get(f"/api/v1/media/{pdf_row['media_object_id']}",
                                 headers={"Authorization": f"Bearer {key}"})
            assert 'filename="quote.pdf"' in got.headers["content-disposition"]

            # The same conversation API on a WhatsApp-Web phone: the chat, its messages, read state.
            headers = {"Authorization": f"Bearer {key}"}
            chats = (await http.get("/api/v1/chats", headers=headers)).json()["data"]
            chat = next(c for c in chats if c["chat_id"] == "60190000003@c.us")
            assert chat["unread_count"] == 3 and chat["contact_name"] == "Contact 60190000003"
            page = (await http.get("/api/v1/chats/60190000003/messages", headers=headers)).json()["data"]
            assert [m["external_id"] for m in page] == [pdf_id, sent["image"][0], sent["voice"][0]]
            assert all(m["media"]["state"] == "stored" for m in page)
            read = (await http.post("/api/v1/chats/60190000003@c.us/read", headers=headers)).json()
            # The session sends the read receipts (tests/e2e/test_chats_wwebjs.py covers presence and checks).
            assert (read["marked"], read["provider_notified"]) == (3, True)
            assert (await http.get("/api/v1/chats", params={"unread": "true"}, headers=headers)).json()["data"] == []
            typing = await http.post("/api/v1/chats/60190000003@c.us/typing", json={}, headers=headers)
            check = await http.post("/api/v1/contacts/check", json={"numbers": ["60190000003"]}, headers=headers)
            assert typing.status_code == 200 and typing.json()["provider_notified"] is True, typing.text
            assert check.status_code == 200 and check.json()["results"][0]["on_whatsapp"] is True, check.text
    finally:
        for proc in reversed(procs):
            proc.kill_tree()
