"""Recipient normalisation, request schemas and the stored payload shape (no services)."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from bisnesgpt.api.schemas.send import V1Message
from bisnesgpt.api.schemas.send_v2 import V2Document, V2Edit, V2React, V2Text
from bisnesgpt.api.send_routes import v1_draft
from bisnesgpt.core.errors import BadRequest, ValidationFailed
from bisnesgpt.messaging import drafts
from bisnesgpt.messaging.addressing import chat_of_wweb_id, normalize_phone, normalize_recipient
from bisnesgpt.messaging.drafts import Resolved
from bisnesgpt.messaging.idempotency import fingerprint, validate_key

pytestmark = pytest.mark.unit

V1 = TypeAdapter(V1Message)


@pytest.mark.parametrize(("given", "chat_id", "to"), [
    ("60123456789", "60123456789@c.us", "60123456789"),
    ("+60 12-345 6789", "60123456789@c.us", "60123456789"),
    ("0060123456789", "60123456789@c.us", "60123456789"),
    ("60123456789@c.us", "60123456789@c.us", "60123456789"),
    ("60123456789@s.whatsapp.net", "60123456789@c.us", "60123456789"),
    ("(415) 555-2671".replace("(", "+1 ("), "14155552671@c.us", "14155552671"),
    ("120363012345678901@g.us", "120363012345678901@g.us", "120363012345678901"),
    ("60123456789-1600000000@g.us", "60123456789-1600000000@g.us", "60123456789-1600000000"),
])
def test_recipients_normalise_to_one_form(given: str, chat_id: str, to: str) -> None:
    recipient = normalize_recipient(given)
    assert (recipient.chat_id, recipient.to) == (chat_id, to)
    assert recipient.recipient_type == ("group" if chat_id.endswith("@g.us") else "individual")


@pytest.mark.parametrize("bad", ["123", "0123456789", "abc", "60123456789@lid", "+999 1234567", "x@g.us", "",
                                 "6" * 16, "60123456789@c.us@c.us"])
def test_bad_recipients_are_field_errors(bad: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_recipient(bad, field="to")
    assert caught.value.errors[0]["field"] == "to"


def test_phone_numbers_need_their_country_code() -> None:
    assert normalize_phone("+44 20 7946 0958") == "442079460958"
    with pytest.raises(ValidationFailed):
        normalize_phone("020 7946 0958")


def test_chat_is_read_from_a_whatsapp_web_id() -> None:
    derived = chat_of_wweb_id("true_60123456789@c.us_3EB0C767D26A1D4E5F60")
    assert derived is not None and derived.chat_id == "60123456789@c.us"
    assert chat_of_wweb_id("wamid.HBgLNjAxMjM0NTY3ODkVAgARGBI") is None


def test_v2_bodies_bound_sizes_and_reject_unknown_fields() -> None:
    assert V2Text(message="x" * 4096).message
    for bad in ({"message": "x" * 4097}, {"message": ""}, {"message": "hi", "unknown": 1},
                {"message": "hi", "phoneIndex": -1}):
        with pytest.raises(ValidationError):
            V2Text.model_validate(bad)
    with pytest.raises(ValidationError):
        V2Document.model_validate({"documentUrl": "ftp://example.com/a.pdf"})
    with pytest.raises(ValidationError):
        V2Document.model_validate({"documentUrl": "https://example.com/a.pdf", "caption": "c" * 1025})
    with pytest.raises(ValidationError):
        V2Document.model_validate({"documentUrl": "https://example.com/a.pdf", "filename": "a", "fileName": "b"})
    assert V2Document(documentUrl="https://example.com/a.pdf", fileName="a.pdf").effective_filename == "a.pdf"
    assert V2Edit(newText="fixed").text == "fixed"
    with pytest.raises(ValidationError):
        V2Edit.model_validate({})
    assert V2React(emoji="").effective_emoji == ""
    with pytest.raises(ValidationError):
        V2React.model_validate({"reaction": "👍", "emoji": "👍"})


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://cdn.example.com:8443/x?y=1#z",
                                 "HTTPS://EXAMPLE.COM/A.JPG"])
def test_http_urls_are_accepted(url: str) -> None:
    assert V1.validate_python({"to": "60123456789", "type": "image", "image": {"link": url}})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "https://", "http://exa mple.com/",
                                 "https://example.com:99999/x", "//example.com/a.jpg"])
def test_non_http_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValidationError):
        V1.validate_python({"to": "60123456789", "type": "image", "image": {"link": url}})


def test_v1_has_one_schema_per_type() -> None:
    with pytest.raises(ValidationError):  # the text object on an image message
        V1.validate_python({"to": "60123456789", "type": "image", "text": {"body": "x"}})
    with pytest.raises(ValidationError):  # both link and id
        V1.validate_python({"to": "60123456789", "type": "audio", "audio": {"link": "https://e.com/a", "id": "1"}})
    with pytest.raises(ValidationError):  # audio has no caption
        V1.validate_python({"to": "60123456789", "type": "audio", "audio": {"link": "https://e.com/a.ogg",
                                                                            "caption": "x"}})
    with pytest.raises(ValidationError):
        V1.validate_python({"to": "60123456789", "type": "carrier-pigeon"})


def _payload(body: dict[str, object]) -> dict[str, object]:
    draft = v1_draft(V1.validate_python(body))
    assert draft.recipient is not None
    return Resolved(draft, draft.recipient, "wamid.TARGET" if draft.target else None,
                    "wamid.QUOTED" if draft.reply_to else None).payload()


def test_payloads_follow_the_cloud_api_contract() -> None:
    assert _payload({"to": "+60123456789", "type": "text", "text": {"body": "hi"},
                     "context": {"message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"}}) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "60123456789", "type": "text",
        "text": {"body": "hi", "preview_url": False}, "context": {"message_id": "wamid.QUOTED"}}
    assert _payload({"to": "60123456789", "type": "document",
                     "document": {"link": "https://e.com/a.pdf", "filename": "a.pdf", "caption": "c"}})["document"] == {
        "link": "https://e.com/a.pdf", "filename": "a.pdf", "caption": "c"}
    assert _payload({"to": "60123456789", "type": "reaction",
                     "reaction": {"message_id": "ours", "emoji": "👍"}})["reaction"] == {
        "message_id": "wamid.TARGET", "emoji": "👍"}
    assert _payload({"to": "60123456789", "type": "edit",
                     "edit": {"message_id": "ours", "text": {"body": "new"}}})["edit"] == {
        "message_id": "wamid.TARGET", "text": {"body": "new"}}
    assert _payload({"to": "60123456789", "type": "delete", "delete": {"message_id": "ours"}})["delete"] == {
        "message_id": "wamid.TARGET", "for_everyone": True}
    group = _payload({"to": "120363012345678901@g.us", "type": "text", "text": {"body": "all"}})
    assert (group["recipient_type"], group["to"]) == ("group", "120363012345678901")
    template = _payload({"to": "60123456789", "type": "template",
                         "template": {"name": "order_update", "language": {"code": "en_US"}}})["template"]
    assert template == {"name": "order_update", "language": {"code": "en_US", "policy": "deterministic"}}
    contacts = _payload({"to": "60123456789", "type": "contacts",
                         "contacts": [{"name": {"formatted_name": "Ali"}, "phones": [{"phone": "+60123"}]}]})
    assert contacts["contacts"] == [{"name": {"formatted_name": "Ali"}, "phones": [{"phone": "+60123"}]}]


def test_recipient_type_must_match_the_recipient() -> None:
    with pytest.raises(ValidationFailed):
        v1_draft(V1.validate_python({"to": "60123456789", "recipient_type": "group", "type": "text",
                                     "text": {"body": "x"}}))


def test_targeted_drafts_need_a_target() -> None:
    recipient = normalize_recipient("60123456789")
    with pytest.raises(ValueError, match="target"):
        drafts.Draft("reaction", {"emoji": "x"}, recipient)
    with pytest.raises(ValueError, match="unknown"):
        drafts.Draft("carousel", {}, recipient)


def test_fingerprint_ignores_key_order_and_whitespace_only() -> None:
    a = fingerprint("POST", "/api/v1/messages", {"to": "1", "type": "text", "text": {"body": "x"}})
    b = fingerprint("post", "/api/v1/messages", {"text": {"body": "x"}, "type": "text", "to": "1"})
    assert a == b
    assert a != fingerprint("POST", "/api/v1/messages", {"to": "1", "type": "text", "text": {"body": "y"}})
    assert a != fingerprint("POST", "/api/v2/messages/text/acme/1", {"to": "1", "type": "text", "text": {"body": "x"}})


def test_idempotency_keys_are_bounded() -> None:
    assert validate_key("k" * 255) == "k" * 255
    for bad in ("", "k" * 256, "tab\there"):
        with pytest.raises(BadRequest):
            validate_key(bad)
