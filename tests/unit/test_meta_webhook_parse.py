"""Webhook payloads into items, and inbound messages into the columns they fill (pure functions)."""

from __future__ import annotations

import pytest

from bisnesgpt.engines.meta.webhook_parse import (
    ChangeItem,
    InboundItem,
    StatusItem,
    describe_inbound,
    parse_payload,
)

pytestmark = pytest.mark.unit

METADATA = {"display_phone_number": "+60 12-345 6789", "phone_number_id": "1001"}


def payload(field: str, value: object) -> dict[str, object]:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA1", "changes": [{"field": field, "value": value}]}]}


def test_a_messages_change_gives_its_messages_statuses_and_the_rest() -> None:
    items = parse_payload(payload("messages", {
        "messaging_product": "whatsapp", "metadata": METADATA,
        "contacts": [{"wa_id": "60199", "profile": {"name": "Customer"}}],
        "messages": [{"from": "60199", "id": "wamid.IN", "type": "text", "text": {"body": "hi"}}],
        "statuses": [{"id": "wamid.OUT", "status": "delivered"}, {"id": "wamid.X", "status": "deleted"}],
        "errors": [{"code": 131000}],
    }), "meta")
    inbound, delivered, unknown, extra = items
    assert isinstance(inbound, InboundItem) and inbound.contact_name == "Customer"
    assert (inbound.sender, inbound.external_id, inbound.source.waba_id) == ("60199", "wamid.IN", "WABA1")
    assert (inbound.source.phone_number_id, inbound.source.display_phone_number) == ("1001", "+60 12-345 6789")
    assert isinstance(delivered, StatusItem) and (delivered.wamid, delivered.our_status) == ("wamid.OUT", "delivered")
    assert isinstance(unknown, StatusItem) and unknown.our_status is None and unknown.errors is None
    assert isinstance(extra, ChangeItem) and extra.source.field == "messages.extra"
    assert extra.value == {"errors": [{"code": 131000}]}


def test_other_changes_and_garbled_parts_are_kept_not_dropped() -> None:
    (change,) = parse_payload(payload("account_update", {"event": "PARTNER_REMOVED"}), "360dialog")
    assert isinstance(change, ChangeItem) and change.source.provider == "360dialog"
    assert parse_payload({"entry": "garbled"}, "meta") == []
    assert parse_payload(["not", "an", "object"], "meta") == []
    (odd,) = parse_payload(payload("messages", "not an object"), "meta")
    assert isinstance(odd, ChangeItem) and odd.value == {}


@pytest.mark.parametrize(("message", "expected"), [
    ({"type": "text", "text": {"body": "hello"}}, ("text", "hello", None)),
    ({"type": "image", "image": {"id": "M1", "mime_type": "image/png", "caption": "look"}}, ("image", "look", "M1")),
    ({"type": "location", "location": {"latitude": 3.1, "longitude": 101.7}}, ("location", "3.1,101.7", None)),
    ({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ali"}}, {"name": {}}]}, ("contacts", "Ali", None)),
    ({"type": "button", "button": {"payload": "YES"}}, ("button", "YES", None)),
    ({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "Two"}}},
     ("interactive", "Two", None)),
    ({"type": "reaction", "reaction": {"message_id": "wamid.OUT", "emoji": "+1"}}, ("reaction", "+1", None)),
    ({"type": "sticker"}, ("sticker", None, None)),
    ({}, ("unknown", None, None)),
])
def test_inbound_messages_of_every_type_fill_their_columns(message: dict[str, object],
                                                           expected: tuple[str, str | None, str | None]) -> None:
    fields = describe_inbound(message)  # type: ignore[arg-type]
    assert (fields.message_type, fields.content, fields.media_id) == expected


def test_a_reaction_refers_to_the_message_it_reacts_to() -> None:
    fields = describe_inbound({"type": "reaction", "context": {"id": "wamid.CTX"},
                               "reaction": {"message_id": "wamid.OUT", "emoji": "+1"}})
    assert fields.context_message_id == "wamid.OUT"
    assert describe_inbound({"type": "text", "context": {"id": "wamid.CTX"}}).context_message_id == "wamid.CTX"
