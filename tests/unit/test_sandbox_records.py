"""The sandboxes' typed records: the emulator's request log, JSON conversions, the network's SQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bisnesgpt.sandbox.jsonvalues import as_float, as_int, as_strings, as_text
from bisnesgpt.sandbox.meta_emulator.context import RequestContext
from bisnesgpt.sandbox.meta_emulator.record import RequestLog
from bisnesgpt.sandbox.wweb.config import NetworkConfig
from bisnesgpt.sandbox.wweb.records import Records

pytestmark = pytest.mark.unit


def test_a_logged_request_has_only_the_keys_that_apply_in_the_logs_order() -> None:
    log = RequestLog()
    refused = RequestContext("POST", "/v23.0/1/messages", "meta", "send", "1")
    log.add(refused.fields(), http_status=401, error_code=190)
    sent = RequestContext("POST", "/messages", "d360", "send", "2", body={"to": "601"}, type="text", to="601",
                          wa_id="601")
    log.add(sent.fields(), http_status=200, wamid="wamid.X", failed_code=None)
    first, second = log.entries
    assert list(first) == ["method", "path", "profile", "operation", "phone_number_id", "received_ts", "http_status",
                           "error_code", "seq", "ts"]
    assert list(second)[6:10] == ["body", "type", "to", "wa_id"] and second["failed_code"] is None
    assert first["received_ts"] <= first["ts"]  # arrived, then answered
    assert [e["seq"] for e in log.select(since=1)] == [2]
    assert "body" not in log.select(phone_number_id="2")[0] and log.select(with_body=True)[1]["body"] == {"to": "601"}
    assert log.select(operation="mark_read") == [] and len(log.select(limit=1)) == 1
    log.clear()
    log.add(refused.fields(), http_status=200)
    assert log.entries[0]["seq"] == 3  # numbering goes on: a reader's `since` stays valid


@pytest.mark.parametrize("value", ["x", [1], None, {"a": 1}, "1.5", "7", 2.5, True])
@pytest.mark.parametrize(("ours", "builtin"), [(as_float, float), (as_int, int)])
def test_conversions_answer_and_fail_like_the_builtins(value: Any, ours: Any, builtin: Any) -> None:
    try:
        expected = builtin(value)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc), match=f"^{re.escape(str(exc))}$"):
            ours(value)
    else:
        assert ours(value) == expected


def test_strings_and_text() -> None:
    assert as_strings(["a", 1]) == ["a", "1"] and as_strings("ab") == ["a", "b"]
    with pytest.raises(TypeError, match="'int' object is not iterable"):
        as_strings(5)
    assert as_text(None) is None and as_text(12) == "12"


def test_network_settings_take_known_names_only() -> None:
    config = NetworkConfig()
    config.update({"ack_read_ms": "70", "auto_read": 0, "keepalive_interval": 2, "not_on_whatsapp": ["601", 602]})
    assert (config.ack_read_ms, config.auto_read, config.keepalive_interval) == (70, False, 2.0)
    assert config.not_on_whatsapp == ["601", "602"]
    for name in ("nope", "update", "as_json"):
        with pytest.raises(KeyError):
            config.update({name: 1})


def test_message_filters_and_known_sessions() -> None:
    records = Records(None)
    records.record_outbound("a:0", "m1", "601@c.us", "text", {"text": "x"}, 1)
    records.record_inbound("a:0", "m2", "602@c.us", "text", {"text": "y"})
    records.record_inbound("b:1", "m3", "601@c.us", "text", {})
    assert records.record_outbound("a:0", "m1", "601@c.us", "text", {}, 1) is False
    assert [m["id"] for m in records.messages()] == ["m1", "m2", "m3"]
    assert [m["id"] for m in records.messages(session="a:0", direction="in")] == ["m2"]
    assert [m["id"] for m in records.messages(chat="601@c.us")] == ["m1", "m3"]
    assert records.messages(session="b:1", chat="602@c.us") == []
    assert records.annotate("a:0", "m1", "edit", "m4", "x2")
    changed = records.message("a:0", "m1")
    assert changed is not None and changed["body"]["editedText"] == "x2" and changed["received_count"] == 2
    records.bind_connection(records.open_connection({}, None), "c:2", {"holder": "h"}, False)
    assert records.sessions() == {"a:0", "b:1", "c:2"}


def test_every_arrival_of_a_sent_message_is_a_receipt_naming_the_process_that_drove_it() -> None:
    records = Records(None)
    first = records.open_connection({}, None)
    records.bind_connection(first, "a:0", {"holder": "wwebjs@h1:10:aa", "pid": 10}, False)
    second = records.open_connection({}, None)
    records.bind_connection(second, "a:0", {"holder": "wwebjs@h2:20:bb", "pid": 20}, False)
    records.record_outbound("a:0", "m1", "601@c.us", "text", {}, first)
    records.record_outbound("a:0", "m1", "601@c.us", "text", {}, second)  # the same message, again, elsewhere
    records.record_outbound("b:0", "m2", "601@c.us", "text", {}, first)
    receipts = records.receipts("a:0")
    assert [(r["id"], r["connection_id"], (r["client"] or {}).get("holder")) for r in receipts] == [
        ("m1", first, "wwebjs@h1:10:aa"), ("m1", second, "wwebjs@h2:20:bb")]
    assert receipts[0]["at"] <= receipts[1]["at"]
    assert [r["session"] for r in records.receipts()] == ["a:0", "a:0", "b:0"]
    message = records.message("a:0", "m1")
    assert message is not None and message["received_count"] == 2 and message["connection_id"] == first
