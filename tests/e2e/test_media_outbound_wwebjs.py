"""Media uploaded to the gateway, sent by its id from a WhatsApp-Web session (sandbox network).

``POST /api/v1/media`` stores a file; ``POST /api/v1/messages`` names it by its ``med_…``
id; the wwebjs process reads the stored bytes and its driver uploads them to the network's
media server, as WhatsApp's CDN would get them. The recipient's side — the network's record
of the message and the bytes behind its media handle — has exactly the uploaded bytes.
Another company's media id is a 404.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.support.wwebjs import company_key, paired_stack, seed_phone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONTACT = "60190000021"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(200_000) + b"\xff\xd9"
PDF = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"


async def test_uploaded_media_goes_out_byte_identical(tmp_path: Path, database_url: str, redis_url: str) -> None:
    await seed_phone(database_url, "acme", 0)
    await seed_phone(database_url, "rival", 0)
    key, rival_key = await company_key(database_url, "acme"), await company_key(database_url, "rival")
    async with paired_stack(tmp_path, database_url, redis_url, phone="60123450021") as stack, \
            httpx.AsyncClient(base_url=stack.api.url, timeout=60) as http:
        ids = {}
        for name, content, mime in (("photo.jpg", JPEG, "image/jpeg"), ("terms.pdf", PDF, "application/pdf")):
            answer = await http.post("/api/v1/media", headers={"Authorization": f"Bearer {key}"},
                                     files={"file": (name, content, mime)})
            assert answer.status_code == 201, answer.text
            ids[name] = answer.json()["id"]
        sends = {}
        for kind, name, extra in (("image", "photo.jpg", {"caption": "ours"}), ("document", "terms.pdf", {})):
            sent = await http.post("/api/v1/messages", headers={"Authorization": f"Bearer {key}"},
                                   json={"to": CONTACT, "type": kind, kind: {"id": ids[name], **extra}})
            assert sent.status_code == 202, sent.text
            sends[name] = sent.json()["messageId"]

        theirs = await http.post("/api/v1/messages", headers={"Authorization": f"Bearer {rival_key}"},
                                 json={"to": CONTACT, "type": "image", "image": {"id": ids["photo.jpg"]}})
        assert theirs.status_code == 404 and theirs.json()["type"].endswith("/not-found"), theirs.text

        recorded = {}
        for name, message_id in sends.items():
            row = await stack.db.wait_message(message_id, "read", timeout=60)
            found = [m for m in await stack.sandbox.messages("acme:0") if m["id"] == row["external_id"]]
            assert len(found) == 1, found
            recorded[name] = found[0]
        async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=60) as net:
            for name, content, mime in (("photo.jpg", JPEG, "image/jpeg"), ("terms.pdf", PDF, "application/pdf")):
                media = recorded[name]["body"]["media"]
                digest = hashlib.sha256(content).hexdigest()
                assert (media["sha256"], media["size"], media["mime"]) == (digest, len(content), mime), name
                assert media["filename"] == name
                served = await net.get(f"/media/{media['handle']}")
                assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest, name
        assert recorded["photo.jpg"]["body"]["text"] == "ours"
