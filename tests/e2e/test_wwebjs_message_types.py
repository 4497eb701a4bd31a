"""Every message type of a WhatsApp-Web phone end to end: ``POST /api/v1/messages`` → wwebjs
(sandbox driver) → the sandbox network's record, and contacts' locations, cards and poll
votes back as tenant events. Cloud API phones refuse polls at once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.polling import eventually
from tests.support.procs import clean_env
from tests.support.wwebjs import (
    Db,
    SandboxNetwork,
    company_key,
    paired_stack,
    seed_phone,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ME, CONTACT, FRIEND = "60123450001", "60190000002", "60190000003"
CARDS = [{"name": {"formatted_name": "Aisha Rahman", "first_name": "Aisha", "last_name": "Rahman"},
          "phones": [{"phone": "+60 12-345 6789", "wa_id": "60123456789", "type": "CELL"}],
          "org": {"company": "Acme"}},
         {"name": {"formatted_name": "Acme Support"}, "phones": [{"phone": "+60 3-1234 5678", "type": "WORK"}],
          "emails": [{"email": "help@acme.example", "type": "WORK"}]}]


class Stack:
    def __init__(self, sandbox: SandboxNetwork, db: Db, http: httpx.AsyncClient) -> None:
        self.sandbox, self.db, self.http = sandbox, db, http

    async def send(self, body: dict[str, Any]) -> str:
        response = await self.http.post("/api/v1/messages", json={"to": CONTACT, **body})
        assert response.status_code == 202, response.text
        message_id: str = response.json()["messageId"]
        return message_id

    async def on_network(self, message_id: str) -> dict[str, Any]:
        """The message as the network recorded it, once it went out."""
        row = await self.db.wait_message(message_id, "read", timeout=30)
        found = [m for m in await self.sandbox.messages("acme:0") if m["id"] == row["external_id"]]
        assert len(found) == 1, found
        return found[0]

    async def events(self, kind: str, where: str, value: str, n: int) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            rows = await self.db.fetch("SELECT data FROM tenant_events WHERE company_id = 'acme' AND type = $1 "
                                       "AND data->>$2::text = $3 ORDER BY created_at, id", kind, where, value)
            return [r["data"] for r in rows] if len(rows) >= n else None
        return await eventually(check, timeout=30, what=f"{n} {kind} events with {where} {value}")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                module_redis: str) -> AsyncIterator[Stack]:
    url = module_db[0]
    tmp = tmp_path_factory.mktemp("types")
    await seed_phone(url, "acme", 0)
    await seed_phone(url, "acme", 1, connection_type="meta_direct")
    async with paired_stack(tmp, url, module_redis, phone=ME) as running, httpx.AsyncClient(
            base_url=running.api.url, timeout=60,
            headers={"Authorization": f"Bearer {await company_key(url, 'acme')}"}) as http:
        yield Stack(running.sandbox, running.db, http)


async def test_locations_contact_cards_stickers_replies_and_previews_go_out(stack: Stack) -> None:
    pin = await stack.send({"type": "location", "location": {"latitude": 3.139, "longitude": 101.6869,
                                                             "name": "KL Sentral", "address": "Kuala Lumpur"}})
    located = await stack.on_network(pin)
    assert (located["kind"], located["body"]["location"]) == ("location", {
        "latitude": 3.139, "longitude": 101.6869, "name": "KL Sentral", "address": "Kuala Lumpur"})

    cards = await stack.on_network(await stack.send({"type": "contacts", "contacts": CARDS}))
    assert cards["kind"] == "contacts" and [c["name"] for c in cards["body"]["contacts"]] == [
        "Aisha Rahman", "Acme Support"]
    first, second = (c["vcard"] for c in cards["body"]["contacts"])
    assert "FN:Aisha Rahman" in first and "TEL;type=CELL;waid=60123456789:+60 12-345 6789" in first
    assert "ORG:Acme;" in first and "EMAIL;type=WORK:help@acme.example" in second

    sticker = await stack.on_network(await stack.send({"type": "sticker", "sticker": {
        "link": f"{stack.sandbox.url}/samples/sticker.webp"}}))
    assert sticker["kind"] == "sticker" and sticker["body"]["media"]["mime"] == "image/webp"

    # A reply quotes the location by our id; a reply with a card quotes too.
    reply = await stack.on_network(await stack.send({"type": "text", "text": {"body": "Here it is"},
                                                     "context": {"message_id": pin}}))
    assert reply["body"]["replyTo"] == located["id"]
    quoted_card = await stack.on_network(await stack.send({"type": "contacts", "contacts": CARDS[:1],
                                                           "context": {"message_id": pin}}))
    assert quoted_card["body"]["replyTo"] == located["id"]

    preview = await stack.on_network(await stack.send({"type": "text", "text": {
        "body": "https://example.com", "preview_url": True}}))
    plain = await stack.on_network(await stack.send({"type": "text", "text": {"body": "https://example.com"}}))
    assert preview["body"].get("previewUrl") is True and "previewUrl" not in plain["body"]


async def test_polls_and_their_votes_with_tallies(stack: Stack) -> None:
    poll_id = await stack.send({"type": "poll", "poll": {"name": "Delivery slot?",
                                                         "options": ["Morning", "Afternoon", "Evening"],
                                                         "selectable_count": 2}})
    poll = await stack.on_network(poll_id)
    assert poll["body"]["poll"] == {"name": "Delivery slot?", "options": ["Morning", "Afternoon", "Evening"],
                                    "selectableCount": 2}
    wa_id = poll["id"]
    await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "type": "poll_vote", "pollId": wa_id,
                                              "selected": ["Morning", "Evening"]})
    await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "type": "poll_vote", "pollId": wa_id,
                                              "selected": ["Evening"]})  # changed their mind
    votes = await stack.events("message.poll_vote", "external_id", wa_id, 2)
    assert [(v["voter"], v["selected"]) for v in votes] == [(CONTACT, ["Morning", "Evening"]), (CONTACT, ["Evening"])]
    assert votes[-1]["message_id"] == poll_id and votes[-1]["chat_id"] == f"{CONTACT}@c.us"
    assert votes[-1]["tallies"] == [{"option": "Morning", "votes": 0}, {"option": "Afternoon", "votes": 0},
                                    {"option": "Evening", "votes": 1}]
    [network] = [m for m in await stack.sandbox.messages("acme:0") if m["id"] == wa_id]
    assert network["body"]["tallies"] == {"Morning": 0, "Afternoon": 0, "Evening": 1}
    # The network refuses what WhatsApp would: more options than the poll allows.
    with pytest.raises(httpx.HTTPStatusError):
        await stack.sandbox.inbound("acme", 0, **{"from": CONTACT, "type": "poll_vote", "pollId": wa_id,
                                                  "selected": ["Morning", "Afternoon", "Evening"]})

    bad = await stack.http.post("/api/v1/messages", json={"to": CONTACT, "type": "poll", "poll": {
        "name": "?", "options": ["a", "a"]}})
    assert bad.status_code == 422, bad.text
    meta = await stack.http.post("/api/v1/messages", json={"to": CONTACT, "phoneIndex": 1, "type": "poll",
                                                           "poll": {"name": "?", "options": ["a", "b"]}})
    assert meta.status_code == 422 and meta.json()["code"] == "UNSUPPORTED_MESSAGE_TYPE", meta.text


async def test_locations_and_contact_cards_come_in(stack: Stack) -> None:
    pin = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "type": "location", "location": {
        "latitude": 1.3521, "longitude": 103.8198, "name": "Singapore"}})
    vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ben Tan\nTEL;type=CELL;waid=6591234567:+65 9123 4567\nEND:VCARD\n"
    card = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "type": "contacts", "contacts": [
        {"name": "Ben Tan", "vcard": vcard}]})
    [located] = await stack.events("message.inbound", "external_id", pin["id"], 1)
    assert located["type"] == "location" and located["text"] == "Singapore"
    assert located["payload"]["location"] == {"latitude": 1.3521, "longitude": 103.8198, "name": "Singapore"}
    [shared] = await stack.events("message.inbound", "external_id", card["id"], 1)
    assert shared["type"] == "contacts" and shared["payload"]["contacts"] == [{
        "name": {"formatted_name": "Ben Tan"},
        "phones": [{"phone": "+65 9123 4567", "type": "CELL", "wa_id": "6591234567"}]}]

    # The same from the sandbox's CLI, as the README shows it.
    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bisnesgpt", "sandbox", "wweb", "inbound", "acme", "0",
                               "--from", FRIEND, *args, "--url", stack.sandbox.url], env=clean_env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[1]
    [pin_cli] = await stack.events("message.inbound", "external_id", cli("--location", "3.139,101.6869,KL"), 1)
    assert pin_cli["payload"]["location"] == {"latitude": 3.139, "longitude": 101.6869, "name": "KL"}
    [card_cli] = await stack.events("message.inbound", "external_id", cli("--contact", "Ben Tan:+6591234567"), 1)
    assert card_cli["payload"]["contacts"] == [{"name": {"formatted_name": "Ben Tan"}, "phones": [
        {"phone": "+6591234567", "type": "CELL", "wa_id": "6591234567"}]}]


async def test_status_posts_to_a_list_or_to_all_contacts(stack: Stack) -> None:
    text = await stack.http.post("/api/v1/messages", json={"to": "status@broadcast", "type": "status", "status": {
        "text": "Open on Sunday!", "background_color": "#25D366", "font": 2,
        "recipients": ["+60190000002", "60190000003"]}})
    assert text.status_code == 202, text.text
    posted = await stack.on_network(text.json()["messageId"])
    assert (posted["chat"], posted["kind"], posted["body"]["text"]) == ("status@broadcast", "status", "Open on Sunday!")
    assert posted["body"]["status"] == {"mediaKind": "text", "backgroundColor": "#25D366", "font": 2,
                                        "recipients": [CONTACT, FRIEND]}
    image = await stack.http.post("/api/v1/messages", json={"to": "status@broadcast", "type": "status", "status": {
        "image": {"link": f"{stack.sandbox.url}/samples/image.png"}, "caption": "Sale"}})
    assert image.status_code == 202, image.text
    shown = await stack.on_network(image.json()["messageId"])
    assert shown["body"]["status"]["recipients"] == [] and shown["body"]["media"]["mime"] == "image/png"
    assert shown["body"]["text"] == "Sale"

    both = await stack.http.post("/api/v1/messages", json={"to": "status@broadcast", "type": "status", "status": {
        "text": "x", "image": {"link": "https://example.com/a.png"}}})
    assert both.status_code == 422, both.text
    elsewhere = await stack.http.post("/api/v1/messages", json={"to": CONTACT, "type": "status",
                                                                "status": {"text": "x"}})
    assert elsewhere.status_code == 422, elsewhere.text
    meta = await stack.http.post("/api/v1/messages", json={"to": "status@broadcast", "type": "status",
                                                           "phoneIndex": 1, "status": {"text": "x"}})
    assert meta.status_code == 422 and meta.json()["code"] == "UNSUPPORTED_MESSAGE_TYPE", meta.text
    paced = await stack.http.post("/api/v1/messages", json={"to": CONTACT, "type": "text", "phoneIndex": 1,
                                                            "text": {"body": "x"}, "delayMs": 500})
    assert paced.status_code == 422 and paced.json()["code"] == "UNSUPPORTED", paced.text


async def test_view_once_media_and_animated_stickers_come_in_with_their_flags(stack: Stack, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=60) as net:
        image = (await net.get("/samples/image.png")).content
        uploaded = (await net.post("/media/upload", content=image, headers={"Content-Type": "image/png"})).json()
    once = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "type": "image", "text": "just once",
                                                     "media": {**uploaded, "viewOnce": True}})
    [seen] = await stack.events("message.inbound", "external_id", once["id"], 1)
    assert seen["type"] == "image" and seen["payload"]["image"]["view_once"] is True
    assert seen["payload"]["image"]["caption"] == "just once" and "animated" not in seen["payload"]["image"]
    assert seen["media"]["state"] == "stored"  # kept like any image: the gateway saw it once, for the tenant

    # An animated sticker from the sandbox's CLI; a static one carries no flag (as before).
    sticker_file = tmp_path / "wave.webp"
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=60) as net:
        sticker_file.write_bytes((await net.get("/samples/sticker.webp")).content)

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bisnesgpt", "sandbox", "wweb", "inbound", "acme", "0",
                               "--from", FRIEND, "--media", str(sticker_file), "--type", "sticker", "--mime",
                               "image/webp", *args, "--url", stack.sandbox.url], env=clean_env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[1]
    [moving] = await stack.events("message.inbound", "external_id", cli("--animated"), 1)
    assert moving["type"] == "sticker" and moving["payload"]["sticker"]["animated"] is True
    [still] = await stack.events("message.inbound", "external_id", cli(), 1)
    assert "animated" not in still["payload"]["sticker"] and "view_once" not in still["payload"]["sticker"]

    # What WhatsApp never sends is refused by the network.
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=60) as net:
        bad = await net.post("/admin/sessions/acme/0/inbound", json={
            "from": FRIEND, "type": "image", "media": {**uploaded, "animated": True}})
        assert bad.status_code == 400 and "only a sticker can be animated" in bad.text
        document = await net.post("/admin/sessions/acme/0/inbound", json={
            "from": FRIEND, "type": "document", "media": {**uploaded, "viewOnce": True}})
        assert document.status_code == 400 and "can be view-once" in document.text


async def test_forwards_resend_a_stored_message_marked_forwarded(stack: Stack) -> None:
    # An outbound text of ours, forwarded to another chat: the network gets its text, marked forwarded.
    original = await stack.send({"type": "text", "text": {"body": "Order #4711 is ready"}})
    sent = await stack.on_network(original)
    assert "forwarded" not in sent["body"]
    forward = {"to": FRIEND, "type": "forward", "forward": {"message_id": original}}
    first = await stack.http.post("/api/v1/messages", json=forward, headers={"Idempotency-Key": "fwd-4711"})
    again = await stack.http.post("/api/v1/messages", json=forward, headers={"Idempotency-Key": "fwd-4711"})
    assert first.status_code == 202 and again.json()["messageId"] == first.json()["messageId"], again.text
    forwarded = await stack.on_network(first.json()["messageId"])
    assert (forwarded["kind"], forwarded["chat"], forwarded["body"]["text"], forwarded["body"]["forwarded"]) == (
        "text", f"{FRIEND}@c.us", "Order #4711 is ready", True)
    assert forwarded["id"] != sent["id"]
    row = await stack.db.message(first.json()["messageId"])
    assert row is not None and (row["message_type"], row["content"], row["chat_id"]) == (
        "forward", "Order #4711 is ready", f"{FRIEND}@c.us")
    assert row["payload"]["forward"] == {"message_id": original, "type": "text",
                                         "text": {"body": "Order #4711 is ready"}}
    assert await stack.db.history(first.json()["messageId"]) == await stack.db.history(original)

    # A received image (the gateway's stored copy) and a received location, forwarded onwards.
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=60) as net:
        image = (await net.get("/samples/image.png")).content
        uploaded = (await net.post("/media/upload", content=image, headers={"Content-Type": "image/png"})).json()
    photo = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "type": "image", "text": "the parcel",
                                                      "media": uploaded})
    [received] = await stack.events("message.inbound", "external_id", photo["id"], 1)
    assert received["media"]["state"] == "stored"
    shown = await stack.on_network(await stack.send({"type": "forward", "forward": {
        "message_id": received["message_id"]}}))
    assert (shown["kind"], shown["body"]["text"], shown["body"]["forwarded"]) == ("image", "the parcel", True)
    assert shown["body"]["media"]["mime"] == "image/png" and shown["body"]["media"]["size"] == len(image)
    pin = await stack.sandbox.inbound("acme", 0, **{"from": FRIEND, "type": "location", "location": {
        "latitude": 3.139, "longitude": 101.6869, "name": "KL Sentral"}})
    [located] = await stack.events("message.inbound", "external_id", pin["id"], 1)
    moved = await stack.on_network(await stack.send({"type": "forward", "forward": {
        "message_id": located["message_id"]}}))
    assert moved["kind"] == "location" and moved["body"]["forwarded"] is True
    assert moved["body"]["location"]["name"] == "KL Sentral"


async def test_forwards_that_cannot_be_sent_are_refused_at_once(stack: Stack, module_db: tuple[str, Database]
                                                               ) -> None:
    url = module_db[0]
    original = await stack.send({"type": "text", "text": {"body": "hello"}})
    meta = await stack.http.post("/api/v1/messages", json={"to": CONTACT, "type": "forward", "phoneIndex": 1,
                                                           "forward": {"message_id": original}})
    assert meta.status_code == 422 and meta.json()["code"] == "UNSUPPORTED_MESSAGE_TYPE", meta.text
    assert "forwards" in meta.json()["detail"]

    # Another company's message is not there for acme (404), nor is an unknown one.
    await seed_phone(url, "rival", 0)
    async with httpx.AsyncClient(base_url=str(stack.http.base_url), timeout=60, headers={
            "Authorization": f"Bearer {await company_key(url, 'rival')}"}) as rival:
        theirs = await rival.post("/api/v1/messages", json={"to": CONTACT, "type": "text", "text": {"body": "x"}})
    assert theirs.status_code == 202, theirs.text
    for ref in (theirs.json()["messageId"], "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"):
        missing = await stack.http.post("/api/v1/messages", json={"to": FRIEND, "type": "forward",
                                                                  "forward": {"message_id": ref}})
        assert missing.status_code == 404, missing.text
    # A phone forwards its own messages only.
    await seed_phone(url, "acme", 2)
    elsewhere = await stack.http.post("/api/v1/messages", json={"to": FRIEND, "type": "forward", "phoneIndex": 2,
                                                                "forward": {"message_id": original}})
    assert elsewhere.status_code == 422 and "phone 0" in elsewhere.json()["detail"], elsewhere.text
    await stack.db.wait_message(original, "read", timeout=30)
    reaction = await stack.send({"type": "reaction", "reaction": {"message_id": original, "emoji": "👍"}})
    refused = await stack.http.post("/api/v1/messages", json={"to": FRIEND, "type": "forward",
                                                              "forward": {"message_id": reaction}})
    assert refused.status_code == 422 and refused.json()["code"] == "NOT_FORWARDABLE", refused.text
    quoting = await stack.http.post("/api/v1/messages", json={"to": FRIEND, "type": "forward", "context": {
        "message_id": original}, "forward": {"message_id": original}})
    assert quoting.status_code == 422, quoting.text
    rows = await stack.db.fetch("SELECT count(*) AS n FROM messages WHERE company_id = 'acme' AND chat_id = $1 "
                                "AND message_type = 'forward' AND payload->'forward'->>'message_id' = $2",
                                f"{FRIEND}@c.us", reaction)
    assert rows[0]["n"] == 0


async def test_link_previews_are_recorded_only_when_asked_and_survive_a_forward(stack: Stack) -> None:
    link = "Our menu: https://example.com/menu"
    asked = await stack.send({"type": "text", "text": {"body": link, "preview_url": True}})
    previewed = await stack.on_network(asked)
    declined = await stack.on_network(await stack.send({"type": "text", "text": {"body": link,
                                                                                 "preview_url": False}}))
    quoted = await stack.on_network(await stack.send({"type": "text", "text": {"body": link, "preview_url": True},
                                                      "context": {"message_id": asked}}))
    assert previewed["body"]["previewUrl"] is True and "previewUrl" not in declined["body"]
    assert quoted["body"]["previewUrl"] is True and quoted["body"]["replyTo"] == previewed["id"]
    onwards = await stack.on_network(await stack.send({"to": FRIEND, "type": "forward",
                                                       "forward": {"message_id": asked}}))
    assert (onwards["body"]["text"], onwards["body"]["previewUrl"], onwards["body"]["forwarded"]) == (
        link, True, True)

    # The network's record as an operator reads it.
    done = subprocess.run([sys.executable, "-m", "bisnesgpt", "sandbox", "wweb", "messages", "--session", "acme:0",
                           "--url", stack.sandbox.url], env={**clean_env(), "COLUMNS": "400"}, capture_output=True,
                          text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[2]: line for line in done.stdout.splitlines() if len(line.split()) > 2}
    assert "preview" in lines[previewed["id"]] and "forwarded" not in lines[previewed["id"]]
    assert "preview" not in lines[declined["id"]]
    assert "forwarded" in lines[onwards["id"]] and "preview" in lines[onwards["id"]]
