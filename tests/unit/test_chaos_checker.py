"""The chaos checker classifies correctly: it catches lost, duplicated and unexpected messages.

The checker (``tests.support.chaos.check``) reads the database and the providers' records
through a ``ChaosSystem``; here a stand-in gives it hand-made records, so each verdict is
proven to be reachable (a checker that cannot fail proves nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

from bisnesgpt.sandbox.wweb.protocol import wa_message_id
from tests.support.chaos import META_COMPANY, WEB_COMPANY, Fault, LoadGenerator, Send, chat_order_violations, check

pytestmark = pytest.mark.unit


class FakeSystem:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.meta: list[dict[str, Any]] = []
        self.web: list[dict[str, Any]] = []
        self.faults: list[Fault] = []

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return self.rows

    def meta_sends(self) -> list[dict[str, Any]]:
        return self.meta

    def web_sends(self) -> list[dict[str, Any]]:
        return self.web

    def wait_drained(self, message_ids: list[str], timeout: float = 0) -> float:
        return 0.0


def _load(system: FakeSystem, sends: list[Send]) -> LoadGenerator:
    load = LoadGenerator(system, meta_rate=0, wwebjs_rate=0)  # type: ignore[arg-type]
    load.sends = sends
    return load


def _meta(system: FakeSystem, key: str, message_id: str, *, receipts: int = 1, status: str = "sent") -> Send:
    send = Send("meta", key, META_COMPANY, "60100", f"chaos {key}", 0.0, message_id=message_id, acked_at=0.0,
                status_code=202, attempts=1, message_ids={message_id})
    for n in range(receipts):
        system.meta.append({"wamid": f"wamid.{key}.{n}", "ts": 1.0, "http_status": 200,
                            "body": {"text": {"body": f"chaos {key}"}}})
    system.rows.append({"message_id": message_id, "company_id": META_COMPANY, "status": status,
                        "external_id": f"wamid.{key}.0" if receipts else None, "content": f"chaos {key}",
                        "error_code": None, "error_title": None})
    return send


def _web(system: FakeSystem, key: str, message_id: str, *, receipts: int = 1) -> Send:
    send = Send("wwebjs", key, WEB_COMPANY, "60100", f"chaos {key}", 0.0, message_id=message_id, acked_at=0.0,
                status_code=202, attempts=1, message_ids={message_id})
    if receipts:
        system.web.append({"id": wa_message_id(message_id), "received_count": receipts, "first_at": 1.0,
                           "body": {"body": f"chaos {key}"}})
    system.rows.append({"message_id": message_id, "company_id": WEB_COMPANY, "status": "read",
                        "external_id": wa_message_id(message_id), "content": f"chaos {key}",
                        "error_code": None, "error_title": None})
    return send


def test_everything_delivered_once_passes() -> None:
    system = FakeSystem()
    load = _load(system, [_meta(system, "k1", "m1"), _web(system, "k2", "m2")])
    result = check(system, load, scenario="clean")  # type: ignore[arg-type]
    assert len(result.delivered) == 2 and not result.lost and not result.unexpected
    result.assert_ok()


def test_a_message_the_provider_never_received_is_lost() -> None:
    system = FakeSystem()
    load = _load(system, [_meta(system, "k1", "m1", receipts=0), _web(system, "k2", "m2", receipts=0)])
    result = check(system, load, scenario="lost")  # type: ignore[arg-type]
    assert len(result.lost) == 2
    with pytest.raises(AssertionError, match="lost 2"):
        result.assert_ok()


def test_a_failed_or_missing_row_is_lost() -> None:
    system = FakeSystem()
    sends = [_meta(system, "k1", "m1", status="failed"), _meta(system, "k2", "m2")]
    system.rows = [r for r in system.rows if r["message_id"] != "m2"]
    result = check(system, _load(system, sends), scenario="lost")  # type: ignore[arg-type]
    assert sorted(x.split()[1] for x in result.lost) == ["k1", "k2"]


def test_duplicates_pass_within_the_in_flight_bound_and_fail_beyond_it() -> None:
    system = FakeSystem()
    load = _load(system, [_meta(system, "k1", "m1", receipts=2), _web(system, "k2", "m2", receipts=3)])
    system.faults.append(Fault("kill9", "meta", 0.0, 0.0, in_flight=3, in_flight_ids={"m1", "m2", "m3"}))
    result = check(system, load, scenario="dups")  # type: ignore[arg-type]
    assert len(result.duplicated) == 2 and result.duplicate_receipts == 3 and result.duplicate_bound == 3
    result.assert_ok()
    system.faults[0].in_flight_ids = {"m1", "m2"}
    with pytest.raises(AssertionError, match="duplicate receipts"):
        check(system, load, scenario="dups").assert_ok()  # type: ignore[arg-type]


def test_what_nobody_acknowledged_is_unexpected() -> None:
    system = FakeSystem()
    load = _load(system, [_meta(system, "k1", "m1")])
    system.meta.append({"wamid": "wamid.x", "ts": 1.0, "http_status": 200, "body": {"text": {"body": "chaos zz"}}})
    system.web.append({"id": "3EB0FFFF", "received_count": 1, "first_at": 1.0, "body": {"body": "hello"}})
    system.rows.append({"message_id": "m9", "company_id": WEB_COMPANY, "status": "sent", "external_id": "x",
                        "content": "stray", "error_code": None, "error_title": None})
    result = check(system, load, scenario="unexpected")  # type: ignore[arg-type]
    assert len(result.unexpected) == 3, result.unexpected
    with pytest.raises(AssertionError, match="unexpected 3"):
        result.assert_ok()


def test_two_message_ids_for_one_idempotency_key_is_unexpected() -> None:
    system = FakeSystem()
    send = _meta(system, "k1", "m1")
    send.message_ids.add("m1-again")
    result = check(system, _load(system, [send]), scenario="idem")  # type: ignore[arg-type]
    assert any("one Idempotency-Key, 2 message ids" in u for u in result.unexpected)


def test_an_unacknowledged_send_may_have_been_stored_and_sent() -> None:
    """A send that never got its 2xx (gave up) may exist: reported, not unexpected."""
    system = FakeSystem()
    load = _load(system, [_meta(system, "k1", "m1")])
    ghost = _meta(system, "k2", "m2")
    ghost.message_id, ghost.message_ids = None, set()
    load.sends.append(ghost)
    result = check(system, load, scenario="unacked")  # type: ignore[arg-type]
    assert result.unacked == 1 and not result.unexpected and len(result.delivered) == 1


# --- per-chat order ------------------------------------------------------------------------------


def _ordered(system: FakeSystem, kind: str, key: str, seq: int, *, to: str = "60100") -> Send:
    company = META_COMPANY if kind == "meta" else WEB_COMPANY
    message_id = f"id-{key}"
    send = Send(kind, key, company, to, f"chaos {key}", 0.0, message_id=message_id, acked_at=0.0,
                status_code=202, attempts=1, message_ids={message_id})
    external = f"wamid.{key}" if kind == "meta" else wa_message_id(message_id)
    system.rows.append({"message_id": message_id, "company_id": company, "status": "sent", "external_id": external,
                        "content": f"chaos {key}", "error_code": None, "error_title": None, "chat_seq": seq})
    return send


def _meta_receipt(system: FakeSystem, key: str, to: str = "60100") -> None:
    system.meta.append({"wamid": f"wamid.{key}", "ts": 1.0, "http_status": 200, "wa_id": to,
                        "body": {"text": {"body": f"chaos {key}"}}})


def test_meta_messages_received_out_of_acceptance_order_fail_the_check() -> None:
    system = FakeSystem()
    sends = [_ordered(system, "meta", "k1", 1), _ordered(system, "meta", "k2", 2),
             _ordered(system, "meta", "other", 1, to="60200")]
    for key, to in (("k2", "60100"), ("other", "60200"), ("k1", "60100")):
        _meta_receipt(system, key, to)
    result = check(system, _load(system, sends), scenario="reordered")  # type: ignore[arg-type]
    assert result.order_violations == ["meta:60100: 'chaos k1' after 'chaos k2'"] and result.ordered_chats == 2
    with pytest.raises(AssertionError, match="out of acceptance order in 1 chats"):
        result.assert_ok()


def test_web_messages_are_ordered_by_when_the_network_received_them() -> None:
    system = FakeSystem()
    sends = [_ordered(system, "wwebjs", "k1", 1), _ordered(system, "wwebjs", "k2", 2)]
    system.web += [{"id": wa_message_id("id-k2"), "chat": "60100@c.us", "received_count": 1, "first_at": 1.0,
                    "last_at": 1.0, "body": {"body": "chaos k2"}},
                   {"id": wa_message_id("id-k1"), "chat": "60100@c.us", "received_count": 1, "first_at": 2.0,
                    "last_at": 2.0, "body": {"body": "chaos k1"}}]
    result = check(system, _load(system, sends), scenario="reordered")  # type: ignore[arg-type]
    assert result.order_violations == ["wwebjs:60100: 'chaos k1' after 'chaos k2'"]


def test_a_resent_message_passes_only_when_its_copies_precede_its_successors() -> None:
    accepted = {"c": ["a", "b", "c"]}
    assert chat_order_violations(accepted, {"c": ["a", "a", "b", "c"]}) == []
    assert chat_order_violations(accepted, {"c": ["a", "b", "a", "c"]}) == ["c: 'a' after 'b'"]
    assert chat_order_violations(accepted, {"c": ["a", "x", "c"]}) == []  # b lost, unknown x: other verdicts
    assert chat_order_violations({"c": ["a", "b"]}, {}) == []


def test_unordered_messages_are_not_order_checked() -> None:
    system = FakeSystem()
    sends = [_ordered(system, "meta", "k1", 1), _ordered(system, "meta", "k2", 2)]
    for row in system.rows:
        row["chat_seq"] = None
    _meta_receipt(system, "k2")
    _meta_receipt(system, "k1")
    result = check(system, _load(system, sends), scenario="unordered")  # type: ignore[arg-type]
    assert result.order_violations == [] and result.ordered_chats == 0
