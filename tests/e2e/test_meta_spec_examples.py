"""Table-driven over Meta's own OpenAPI description (the vendored spec file itself).

For every request example of ``POST /{Version}/{Phone-Number-ID}/messages``:

1. the emulator (spawned, over HTTP) accepts the example and answers the real success
   shape;
2. the client, given the same intent through its builders, produces a body equal to the
   example (modulo field order and Meta's two documented defaults, ``recipient_type`` =
   ``individual`` and an omitted ``type``), and sends exactly that body over HTTP (the
   emulator's record holds what arrived).

The examples are Postman-style: ``{{Recipient-Phone-Number}}`` & co. are variables, filled
with concrete values here; ``<HEADER_TYPE>`` is an enum placeholder, filled with the only
header type a product list allows (``text``). Nothing else in the examples is changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bisnesgpt.engines.meta import messages
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.profiles import Credentials
from bisnesgpt.sandbox.meta_emulator.spec import MessageValidator, load_spec, request_examples
from tests.support.meta import EmulatorProc

pytestmark = pytest.mark.e2e

SPEC = load_spec()
EXAMPLES = request_examples(SPEC)
PHONE_ID = "106540352242922"
TOKEN = "spec-token"
REFERENCE = Path("/work/shared/reference/meta-cloud-api/business-messaging-api_v23.0.yaml")
SPEC_SHA256 = "c7148d5e2aeff32f2effc3d3557795d7eddd07abf8b017c9e40e86bb3312c116"


def fill(example: dict[str, Any], recipient: str) -> dict[str, Any]:
    text = json.dumps(example)
    for variable, value in {"{{Recipient-Phone-Number}}": recipient, "{{Recipient-WA-Phone-Number}}": recipient,
                            "{{Flow-ID}}": "1234567890123", "{{Flow-Name}}": "my_flow"}.items():
        text = text.replace(variable, value)
    filled: dict[str, Any] = json.loads(text)
    interactive = filled.get("interactive")
    if isinstance(interactive, dict) and (interactive.get("header") or {}).get("type") == "<HEADER_TYPE>":
        interactive["header"]["type"] = "text"
    return filled


def recipient_for(index: int, offset: int) -> str:
    return f"1650555{offset + index:04d}"  # one recipient per send: the pair rate never bites here


def build(example: dict[str, Any]) -> dict[str, Any]:
    """The client's body for the intent the example expresses."""
    if MessageValidator.is_mark_as_read(example):
        return messages.mark_as_read(example["message_id"], typing_indicator="typing_indicator" in example)
    ex = MessageValidator.with_defaults(example)
    kind, to = ex["type"], ex["to"]
    reply = (ex.get("context") or {}).get("message_id")
    obj = ex[kind]
    if kind == "text":
        return messages.text(to, obj["body"], preview_url=obj.get("preview_url"), reply_to=reply)
    if kind in messages.MEDIA_TYPES:
        return messages.media(kind, to, media_id=obj.get("id"), link=obj.get("link"), caption=obj.get("caption"),
                              filename=obj.get("filename"), reply_to=reply)
    if kind == "location":
        return messages.location(to, latitude=obj["latitude"], longitude=obj["longitude"], name=obj.get("name"),
                                 address=obj.get("address"), reply_to=reply)
    if kind == "contacts":
        return messages.contacts(to, obj, reply_to=reply)
    if kind == "reaction":
        return messages.reaction(to, obj["message_id"], obj["emoji"])
    if kind == "template":
        language = obj["language"]
        return messages.template(to, obj["name"], language["code"], components=obj.get("components"),
                                 policy=language.get("policy"), reply_to=reply)
    assert kind == "interactive"
    footer = (obj.get("footer") or {}).get("text")
    if obj["type"] == "button":
        buttons = [(b["reply"]["id"], b["reply"]["title"]) for b in obj["action"]["buttons"]]
        return messages.reply_buttons(to, obj["body"]["text"], buttons, header=obj.get("header"), footer=footer,
                                      reply_to=reply)
    if obj["type"] == "list":
        return messages.list_message(to, obj["body"]["text"], obj["action"]["button"], obj["action"]["sections"],
                                     header=obj.get("header"), footer=footer, reply_to=reply)
    return messages.interactive(to, obj, reply_to=reply)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProc]:
    emu = EmulatorProc(tmp_path_factory.mktemp("spec"), phones=[f"{PHONE_ID}:{TOKEN}"])
    try:
        # The examples' templates exist on this account (as if created in WhatsApp Manager).
        for name, language in {(ex["template"]["name"], ex["template"]["language"]["code"])
                               for ex in EXAMPLES.values() if "template" in ex}:
            emu.admin("POST", "/templates", json={"name": name, "languages": [language]})
        yield emu
    finally:
        emu.close()


def test_the_vendored_spec_is_metas_file() -> None:
    from importlib import resources

    vendored = resources.files("bisnesgpt.sandbox.meta_emulator").joinpath("spec", "business-messaging-api_v23.0.yaml")
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() == SPEC_SHA256
    if REFERENCE.exists():
        assert hashlib.sha256(REFERENCE.read_bytes()).hexdigest() == SPEC_SHA256
    assert len(EXAMPLES) >= 45


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_emulator_accepts_every_request_example(emulator: EmulatorProc, name: str) -> None:
    index = sorted(EXAMPLES).index(name)
    body = fill(EXAMPLES[name], recipient_for(index, 0))
    response = emulator.http.post(f"/v23.0/{PHONE_ID}/messages", json=body,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    answer = response.json()
    if MessageValidator.is_mark_as_read(body):
        assert answer == {"success": True}
        return
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": body["to"], "wa_id": "".join(c for c in body["to"] if c.isdigit())}]
    assert answer["messages"][0]["id"].startswith("wamid.")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_client_builds_and_sends_the_same_body(emulator: EmulatorProc, name: str) -> None:
    index = sorted(EXAMPLES).index(name)
    example = fill(EXAMPLES[name], recipient_for(index, 1000))
    body = build(copy.deepcopy(example))
    expected = example if MessageValidator.is_mark_as_read(example) else MessageValidator.with_defaults(example)
    assert body == expected  # dict equality: field order does not matter, values and nesting do
    last_seq = max([e["seq"] for e in emulator.requests()], default=0)
    creds = Credentials("meta", emulator.url, TOKEN, PHONE_ID, "v23.0")
    async with CloudApiClient() as client:
        if MessageValidator.is_mark_as_read(body):
            assert await client.mark_as_read(creds, body["message_id"],
                                             typing_indicator="typing_indicator" in body) is True
        else:
            sent = await client.send_message(creds, body)
            assert sent.wamid.startswith("wamid.") and sent.wa_id == body["to"].lstrip("+")
    received = emulator.requests(since=last_seq, body=True)
    assert [r["http_status"] for r in received] == [200]
    assert received[0]["body"] == body


def test_invalid_bodies_get_the_graph_error_envelope(emulator: EmulatorProc) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bad = [
        {"messaging_product": "whatsapp", "to": "16505550001", "type": "text", "text": {"body": "x"}, "extra": 1},
        {"messaging_product": "whatsapp", "to": "16505550002", "type": "image", "image": {"id": "1", "link": "x"}},
        {"messaging_product": "whatsapp", "to": "16505550003", "type": "interactive", "interactive": {"type": "list"}},
        {"messaging_product": "whatsapp", "to": "16505550004", "type": "hologram", "hologram": {}},
    ]
    for body in bad:
        response = emulator.http.post(f"/v23.0/{PHONE_ID}/messages", json=body, headers=headers)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == 100 and error["type"] == "OAuthException" and error["fbtrace_id"]
        assert error["error_data"]["details"]
    unknown = emulator.http.post("/v21.0/999999/messages", json=bad[0], headers=headers)
    assert unknown.status_code == 400
    assert (unknown.json()["error"]["code"], unknown.json()["error"]["error_subcode"]) == (100, 33)
    template = {"messaging_product": "whatsapp", "to": "16505550005", "type": "template",
                "template": {"name": "never_created", "language": {"code": "en_US"}}}
    response = emulator.http.post(f"/v19.0/{PHONE_ID}/messages", json=template, headers=headers)
    assert response.json()["error"]["code"] == 132001
    wrong_token = emulator.http.post(f"/v23.0/{PHONE_ID}/messages", json=template,
                                     headers={"Authorization": "Bearer nope"})
    assert wrong_token.status_code == 401 and wrong_token.json()["error"]["code"] == 190
