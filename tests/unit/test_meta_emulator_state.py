"""The emulator's limits and bookkeeping (pure, no server)."""

from __future__ import annotations

import time

import pytest

from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState, new_object_id, new_wamid

pytestmark = pytest.mark.unit


def test_throughput_bucket_allows_one_second_then_the_rate() -> None:
    phone = EmulatedPhone("1", messages_per_second=10)
    assert sum(phone.take_throughput_token(100.0) for _ in range(15)) == 10
    assert not phone.take_throughput_token(100.05)
    assert phone.take_throughput_token(100.101)  # one token refilled after 100 ms
    assert sum(phone.take_throughput_token(101.1 + i * 0.1) for i in range(20)) == 20  # at the rate: never refused


def test_pair_rate_is_per_recipient() -> None:
    phone = EmulatedPhone("1", pair_interval_ms=6000, pair_burst=2)
    assert phone.take_pair_slot("a", 0.0) and phone.take_pair_slot("a", 0.1)
    assert not phone.take_pair_slot("a", 0.2)
    assert phone.take_pair_slot("b", 0.2)
    assert phone.take_pair_slot("a", 6.1)


def test_rules_templates_contacts_and_media_urls() -> None:
    state = EmulatorState()
    rule = state.add_rule({"code": 131026, "to": "+60 12", "times": 1})
    assert state.match_rule("1", "6012", "text") is rule
    assert state.match_rule("1", "6012", "text") is None  # used up
    with pytest.raises(ValueError, match="mode"):
        state.add_rule({"code": 1, "mode": "sometimes"})
    assert state.template_known("hello_world", "en_US") and not state.template_known("hello_world", "ms")
    assert not state.template_known("promo", "en_US")
    state.set_written("1", "601", False)
    assert not state.has_written("1", "601") and state.has_written("2", "601")
    state.set_written("1", "601", True)
    assert state.has_written("1", "601")
    media = state.store_media("1", b"bytes", "image/png")
    assert media.id.isdigit() and len(media.id) == 16
    expires = int(time.time()) + 60
    query = state.media_query(media.id, expires)
    digest = query.rsplit("hash=", 1)[1]
    assert state.media_url_valid(media.id, expires, digest)
    assert not state.media_url_valid(media.id, expires + 1, digest)
    assert not state.media_url_valid(media.id, int(time.time()) - 1,
                                     state.media_query(media.id, int(time.time()) - 1).rsplit("hash=", 1)[1])
    assert new_wamid().startswith("wamid.") and new_object_id().isdigit()


def test_billing_follows_metas_per_message_pricing_with_one_conversation_per_category() -> None:
    state = EmulatorState()
    reply = state.billing("1", "601", None, now=1000.0)
    assert (reply.category, reply.billable, reply.expiration) == ("service", False, 1000 + 86_400)
    assert state.billing("1", "601", None, now=2000.0).conversation_id == reply.conversation_id  # still open
    template = state.billing("1", "601", "hello_world", now=2000.0)
    assert (template.category, template.billable) == ("utility", True)
    assert template.conversation_id != reply.conversation_id  # another category, another conversation
    assert state.billing("1", "602", None, now=2000.0).conversation_id != reply.conversation_id  # another contact
    assert state.billing("1", "601", None, now=1000.0 + 86_400).conversation_id != reply.conversation_id  # expired
    assert state.add_template("promo", None, "MARKETING") == "marketing"
    assert state.billing("1", "601", "promo", now=2000.0).category == "marketing"
    with pytest.raises(ValueError, match="category must be one of"):
        state.add_template("bad", None, "spam")


def test_status_webhooks_carry_the_billing_blocks_as_metas_schema_describes() -> None:
    from jsonschema import Draft202012Validator

    from bisnesgpt.sandbox.meta_emulator.payloads import status_value
    from bisnesgpt.sandbox.meta_emulator.spec import load_spec

    schemas = load_spec()["components"]["schemas"]
    assert isinstance(schemas, dict)
    validator = Draft202012Validator({**schemas["Statuses"], "components": {"schemas": schemas}})  # type: ignore[dict-item]
    billing = EmulatorState().billing("1", "601", "hello_world", now=1000.0)
    sent = status_value("wamid.1", "sent", "601", billing=billing, at=1234.5)["statuses"][0]
    assert validator.is_valid(sent), list(validator.iter_errors(sent))
    assert sent["timestamp"] == "1234"
    assert sent["pricing"] == {"billable": True, "pricing_model": "PMP", "category": "utility"}
    assert sent["conversation"] == {"id": billing.conversation_id, "expiration_timestamp": str(1000 + 86_400),
                                    "origin": {"type": "utility"}}
    read = status_value("wamid.1", "read", "601", billing=billing, at=1240.0)["statuses"][0]
    assert "pricing" not in read and validator.is_valid(read)
