"""Inbound Cloud API media end to end: emulator → meta (webhook, media-downloads) → media store → api.

Spawned processes only: the Cloud API emulator (media ids, retrieve URLs that expire, bytes
behind the phone's token), ``bisnesgpt run meta`` and ``bisnesgpt run api`` sharing
DATA_DIR, and a real tenant webhook receiver. An image, a voice note and a 10 MB PDF are
stored and fetched back byte-identical through the API key route and the signed URL; the
events carry ``data.media``; another company gets 404; a tampered or expired signed URL 403;
a download that keeps failing ends ``failed`` with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.meta import (
    APP_SECRET,
    ENCRYPTION_KEY,
    EmulatorProc,
    MetaProc,
    add_meta_phone,
    meta_env,
    module_database,
    module_redis,
    open_window,
    wait_statuses,
)
from tests.support.polling import eventually
from tests.support.procs import Proc, free_port
from tests.support.webhooks import Receiver, auth, create_endpoint, new_company, receiver, spawn_api

pytestmark = pytest.mark.e2e

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(40_000) + b"\xff\xd9"
OGG = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x1eOpusHead" + os.urandom(30_000)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(10 * 1024 * 1024) + b"\n%%EOF\n"


@dataclass
class Stack:
    db: Database
    emulator: EmulatorProc
    meta: MetaProc
    api: Proc
    base: str
    hooks: Receiver
    company: str
    key: str
    phone: str
    other_key: str


@pytest.fixture(scope="module")
async def stack(pg_server_url: str, template_database: str, redis_server_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    database_url = await module_database(pg_server_url, template_database)
    db = Database(database_url, max_size=4)
    await db.open()
    workdir: Path = tmp_path_factory.mktemp("media-meta")
    emulator = EmulatorProc(workdir, name="emulator")
    with module_redis(redis_server_url) as redis_url, receiver() as hooks:
        media_env = {"DATA_DIR": str(workdir / "data"), "MEDIA_DOWNLOAD_BACKOFF_MS": "200",
                     "MEDIA_DOWNLOAD_ATTEMPTS": "3"}
        meta = MetaProc(workdir, meta_env(database_url, redis_url, free_port(), emulator.url, **media_env))
        api, base = spawn_api(workdir, database_url, redis_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                              META_GRAPH_URL=emulator.url, **media_env)
        try:
            company, key = await new_company(db)
            _other, other_key = await new_company(db)
            phone = "610000000000001"
            emulator.add_phone(phone, access_token="good-token")
            await add_meta_phone(db, company_id=company, phone_number_id=phone, token="good-token")
            emulator.configure_webhooks(url=f"{meta.url}/webhook/meta", app_secret=APP_SECRET)
            create_endpoint(base, key, hooks.url("/tenant"))
            yield Stack(db, emulator, meta, api, base, hooks, company, key, phone, other_key)
        finally:
            api.kill_tree()
            meta.close()
            emulator.close()
            await db.close()
            await drop(pg_server_url, database_url)


async def drop(pg_server_url: str, database_url: str) -> None:
    from tests.support.meta import drop_module_database

    await drop_module_database(pg_server_url, database_url)


def inject(stack: Stack, kind: str, content: bytes, mime: str, **extra: Any) -> str:
    injected = stack.emulator.admin("POST", "/inbound", json={
        "phone_number_id": stack.phone, "from": "60190000001", "name": "Aisha", "type": kind,
        "media_base64": base64.b64encode(content).decode(), "mime_type": mime, **extra})
    return str(injected["message"]["id"])


def events_for(stack: Stack, wamid: str, event_type: str) -> list[dict[str, Any]]:
    found = []
    for received in stack.hooks.requests("/tenant"):
        event = received.event
        if event.get("type") == event_type and event.get("data", {}).get("external_id") == wamid:
            found.append(event)
    return found


async def stored_row(stack: Stack, wamid: str, state: str = "stored", timeout: float = 90) -> Any:
    async def check() -> Any:
        row = await stack.db.fetchrow("SELECT * FROM messages WHERE external_id = $1", wamid)
        return row if row is not None and row["media_state"] == state else None
    return await eventually(check, timeout=timeout)


@pytest.mark.parametrize(("kind", "content", "mime", "filename"), [
    ("image", JPEG, "image/jpeg", None),
    ("audio", OGG, "audio/ogg; codecs=opus", None),
    ("document", PDF, "application/pdf", "quote 2026 \u2013 final.pdf"),
], ids=["image", "voice", "pdf-10mb"])
async def test_inbound_media_is_stored_and_fetched_byte_identical(stack: Stack, kind: str, content: bytes,
                                                                  mime: str, filename: str | None) -> None:
    wamid = inject(stack, kind, content, mime, **({"filename": filename} if filename else {}))
    row = await stored_row(stack, wamid)
    media_id = row["media_object_id"]
    digest = hashlib.sha256(content).hexdigest()

    # The webhook: message.inbound names the media (pending or stored), message.media follows.
    await eventually(lambda: events_for(stack, wamid, "message.inbound") and events_for(stack, wamid,
                                                                                         "message.media"),
                     timeout=60)
    inbound_data = events_for(stack, wamid, "message.inbound")[0]["data"]
    assert (inbound_data["from"], inbound_data["from_number"], inbound_data["from_lid"]) == ("60190000001",
                                                                                           "60190000001", None)
    inbound = inbound_data["media"]
    assert inbound["id"] == media_id and inbound["state"] == "pending" and inbound["url"]
    done = events_for(stack, wamid, "message.media")[0]["data"]["media"]
    assert (done["id"], done["state"], done["sha256"], done["size"]) == (media_id, "stored", digest, len(content))
    assert done["mime_type"] == mime.split(";", maxsplit=1)[0]

    # By API key, streamed, with its headers.
    async with httpx.AsyncClient(base_url=stack.base, timeout=60) as http:
        got = await http.get(f"/api/v1/media/{media_id}", headers=auth(stack.key))
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest
        assert got.headers["content-type"].startswith(mime.split(";", maxsplit=1)[0])
        assert got.headers["content-length"] == str(len(content))
        if filename:
            assert "filename*=UTF-8''quote%202026%20%E2%80%93%20final.pdf" in got.headers["content-disposition"]
        # A range.
        part = await http.get(f"/api/v1/media/{media_id}", headers={**auth(stack.key), "Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(content)}"
        # By the signed URL, without a key (the one the event carried).
        signed = await http.get(done["url"])
        assert signed.status_code == 200 and hashlib.sha256(signed.content).hexdigest() == digest
        # Another company: not found, as if it did not exist.
        theirs = await http.get(f"/api/v1/media/{media_id}", headers=auth(stack.other_key))
        assert theirs.status_code == 404 and theirs.json()["type"].endswith("/not-found")


async def test_signed_urls_refuse_tampering_and_expiry(stack: Stack) -> None:
    wamid = inject(stack, "image", JPEG[:5000] + os.urandom(100), "image/jpeg")
    row = await stored_row(stack, wamid)
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        info = (await http.get(f"/api/v1/media/{row['media_object_id']}/info", headers=auth(stack.key))).json()
        url = httpx.URL(info["url"])
        assert (await http.get(str(url))).status_code == 200
        expires, signature = url.params["expires"], url.params["signature"]
        later = url.copy_set_param("expires", str(int(expires) + 3600))
        forged = url.copy_set_param("signature", signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"))
        stale = url.copy_set_param("expires", "1000")
        for bad in (later, forged, stale):
            answer = await http.get(str(bad))
            assert answer.status_code == 403, (bad, answer.text)
            assert answer.json()["type"].endswith("/forbidden") and answer.json()["detail"]
        other = await http.get(str(url).replace(row["media_object_id"], "med_" + "0" * 32))
        assert other.status_code == 403


async def test_a_download_that_cannot_succeed_is_recorded_failed(stack: Stack) -> None:
    # A media id the Cloud API does not know (deleted, or another phone's): Graph's unknown
    # object on every retrieve; the message shows failed with the reason, the tenant is told.
    injected = stack.emulator.admin("POST", "/inbound", json={
        "phone_number_id": stack.phone, "from": "60190000002", "type": "image",
        "message": {"type": "image", "image": {"id": "987654321012345", "mime_type": "image/jpeg",
                                               "sha256": "bm90IHJlYWw="}}})
    wamid = injected["message"]["id"]
    row = await stored_row(stack, wamid, state="failed")
    assert "refused the media id" in row["media_error"]
    await eventually(lambda: events_for(stack, wamid, "message.media"), timeout=60)
    failed = events_for(stack, wamid, "message.media")[0]["data"]["media"]
    assert (failed["state"], failed["url"]) == ("failed", None) and "refused" in failed["error"]
    # Nothing else is blocked: the next media message is stored.
    after = inject(stack, "image", JPEG[:2000] + os.urandom(64), "image/jpeg")
    await stored_row(stack, after)


async def test_conversations_on_a_cloud_api_phone(stack: Stack) -> None:
    sender = "60190000077"
    wamids = []
    chat = f"{sender}@c.us"
    for n, text in enumerate(("first", "second", "third"), start=1):
        injected = stack.emulator.admin("POST", "/inbound", json={
            "phone_number_id": stack.phone, "from": sender, "name": "Farah", "text": text})
        wamids.append(injected["message"]["id"])

        async def arrived(n: int = n) -> bool:  # one at a time: the conversation's order is arrival order
            return bool(await stack.db.fetchval("SELECT count(*) FROM messages WHERE chat_id = $1", chat) == n)
        await eventually(arrived, timeout=120)
    headers = auth(stack.key)
    async with httpx.AsyncClient(base_url=stack.base, timeout=30, headers=headers) as http:
        chats = (await http.get("/api/v1/chats", params={"phoneIndex": 0})).json()
        ours = next(c for c in chats["data"] if c["chat_id"] == chat)
        assert chats["data"][0]["chat_id"] == chat  # the most recent first
        assert (ours["number"], ours["contact_name"], ours["unread_count"]) == (sender, "Farah", 3)
        assert ours["last_message"]["preview"] == "third" and ours["last_message"]["direction"] == "inbound"
        # Cursor pages cover every chat once.
        seen, cursor = [], None
        while True:
            page = (await http.get("/api/v1/chats", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
                                   )).json()
            seen += [c["chat_id"] for c in page["data"]]
            cursor = page["nextCursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(c["chat_id"] for c in chats["data"]) and len(seen) == len(set(seen))
        unread = (await http.get("/api/v1/chats", params={"unread": "true"})).json()["data"]
        assert chat in [c["chat_id"] for c in unread]
        # The chat's messages, paged back two at a time, in conversation order.
        first_page = (await http.get(f"/api/v1/chats/{sender}/messages", params={"limit": 2})).json()
        assert [m["content"] for m in first_page["data"]] == ["second", "third"]
        older = (await http.get(f"/api/v1/chats/{chat}/messages",
                                params={"limit": 2, "before": first_page["nextCursor"]})).json()
        assert [m["content"] for m in older["data"]] == ["first"] and older["nextCursor"] is None
        # Read: Meta marks the newest message read; the unread count resets.
        stack.emulator.admin("DELETE", "/requests")
        read = (await http.post(f"/api/v1/chats/{chat}/read")).json()
        assert read == {"chat_id": chat, "marked": 3, "provider_notified": True}
        marks = stack.emulator.requests(operation="mark_read", body="true")
        assert [m["body"]["message_id"] for m in marks] == [wamids[-1]]
        again = (await http.get("/api/v1/chats", params={"unread": "true"})).json()["data"]
        assert chat not in [c["chat_id"] for c in again]
        # Typing: the Cloud API's typing indicator; no recording state, no on-WhatsApp check.
        typing = await http.post(f"/api/v1/chats/{chat}/typing", json={"state": "typing"})
        assert typing.status_code == 200
        shown = stack.emulator.requests(operation="mark_read", body="true")[-1]["body"]
        assert shown["typing_indicator"] == {"type": "text"} and shown["message_id"] == wamids[-1]
        recording = await http.post(f"/api/v1/chats/{chat}/typing", json={"state": "recording"})
        assert recording.status_code == 422 and "recording" in recording.json()["detail"]
        check = await http.post("/api/v1/contacts/check", json={"numbers": ["60123456789"]})
        assert check.status_code == 422 and check.json()["type"].endswith("/not-offered-by-engine")
        contacts = (await http.get("/api/v1/contacts")).json()["data"]
        farah = next(c for c in contacts if c["chat_id"] == chat)
        assert farah["profile_name"] == "Farah" and farah["number"] == sender
    # Another company: its key sees no such phone.
    async with httpx.AsyncClient(base_url=stack.base, timeout=30, headers=auth(stack.other_key)) as http:
        assert (await http.get("/api/v1/chats")).status_code == 404
        assert (await http.post(f"/api/v1/chats/{chat}/read")).status_code == 404


async def send_uploaded(http: httpx.AsyncClient, key: str, to: str, kind: str, media: dict[str, Any]) -> httpx.Response:
    return await http.post("/api/v1/messages", headers=auth(key),
                           json={"to": to, "type": kind, kind: media, "phoneIndex": 0})


async def test_uploaded_media_is_sent_by_id_and_the_recipient_gets_the_same_bytes(stack: Stack) -> None:
    to = "60190000055"
    await open_window(stack.db, [to], company_id=stack.company)
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    pdf = b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024) + b"\n%%EOF\n"
    async with httpx.AsyncClient(base_url=stack.base, timeout=60) as http:
        uploads = {}
        for name, content, mime in (("photo.png", png, "image/png"), ("terms.pdf", pdf, "application/pdf")):
            answer = await http.post("/api/v1/media", headers=auth(stack.key), files={"file": (name, content, mime)})
            assert answer.status_code == 201, answer.text
            uploads[name] = answer.json()["id"]
        image = await send_uploaded(http, stack.key, to, "image", {"id": uploads["photo.png"], "caption": "ours"})
        document = await send_uploaded(http, stack.key, to, "document", {"id": uploads["terms.pdf"]})
        assert image.status_code == 202 and document.status_code == 202, (image.text, document.text)
        ids = [image.json()["messageId"], document.json()["messageId"]]
        await wait_statuses(stack.db, ids, {"sent", "delivered", "read"}, what="uploaded media sent")

        # Another company cannot send this company's media: 404, nothing stored.
        theirs = await send_uploaded(http, stack.other_key, to, "image", {"id": uploads["photo.png"]})
        assert theirs.status_code == 404 and theirs.json()["type"].endswith("/not-found"), theirs.text
        # A PDF is no image: a clear 422 before anything is stored.
        wrong = await send_uploaded(http, stack.key, to, "image", {"id": uploads["terms.pdf"]})
        assert wrong.status_code == 422 and "application/pdf" in wrong.json()["detail"], wrong.text

    # Graph got each file on the phone's media endpoint, then a send naming the Graph id; the
    # recipient's side (the emulator's send log) has the very bytes uploaded to us.
    sends = {r["wamid"]: r for r in stack.emulator.requests(operation="send", body="true") if r.get("wamid")}
    rows = await stack.db.fetch("SELECT message_id, external_id FROM messages WHERE message_id = ANY($1::text[])", ids)
    external = {r["message_id"]: r["external_id"] for r in rows}
    image_send, document_send = sends[external[ids[0]]], sends[external[ids[1]]]
    assert image_send["media_sha256"] == hashlib.sha256(png).hexdigest() and image_send["size"] == len(png)
    assert document_send["media_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert image_send["body"]["image"]["caption"] == "ours"
    assert image_send["body"]["image"]["id"].isdigit() and not image_send["body"]["image"]["id"].startswith("med_")
    assert document_send["body"]["document"]["filename"] == "terms.pdf"
    uploaded = {r["media_id"] for r in stack.emulator.requests(operation="media_upload", phone_number_id=stack.phone)
                if r["http_status"] == 200}
    assert {image_send["media_id"], document_send["media_id"]} <= uploaded


async def test_link_preview_flags_reach_graph_as_given(stack: Stack) -> None:
    to = "60190000056"
    await open_window(stack.db, [to], company_id=stack.company)
    async with httpx.AsyncClient(base_url=stack.base, timeout=60) as http:
        answers = [await http.post("/api/v1/messages", headers=auth(stack.key), json={
            "to": to, "type": "text", "phoneIndex": 0, "text": text}) for text in (
            {"body": "Menu: https://example.com/menu", "preview_url": True},
            {"body": "Menu: https://example.com/menu", "preview_url": False},
            {"body": "Menu: https://example.com/menu"})]
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    ids = [a.json()["messageId"] for a in answers]
    await wait_statuses(stack.db, ids, {"sent", "delivered", "read"}, what="texts sent")
    rows = await stack.db.fetch("SELECT message_id, external_id FROM messages WHERE message_id = ANY($1::text[])", ids)
    external = {r["message_id"]: r["external_id"] for r in rows}
    sends = {r["wamid"]: r for r in stack.emulator.requests(operation="send", body="true") if r.get("wamid")}
    asked = [sends[external[i]]["body"]["text"].get("preview_url") for i in ids]
    assert asked == [True, False, False]  # the default is sent as false, as the payload stores it
