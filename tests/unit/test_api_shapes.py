"""The API's and the dashboard's JSON shapes from their records (no services): a session, a
phone card, a session command, chart series, and the OpenAPI document they make."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest.mock import MagicMock

import pytest
from pydantic import SecretStr, TypeAdapter

from bisnesgpt.api.phone_sessions import PhoneSession
from bisnesgpt.api.session_commands import SessionCommand
from bisnesgpt.api.session_routes import SessionView, session_view
from bisnesgpt.config import Settings
from bisnesgpt.dashboard import charts
from bisnesgpt.dashboard.phones import PhoneCard, counts, phone_card
from bisnesgpt.processes.context import ProcessContext

pytestmark = pytest.mark.unit

AT = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)


def row(**overrides: Any) -> dict[str, Any]:
    """A ``phone_sessions`` row of a wwebjs phone showing a QR code."""
    base: dict[str, Any] = {
        "company_id": "acme", "company_name": "Acme", "phone_index": 0, "connection_type": "wwebjs",
        "config_status": "pending", "display_phone_number": "+60 12-345 6789", "meta_phone_number_id": None,
        "meta_waba_id": None, "dialog360_channel_id": None, "status": "qr", "phone_number": None, "last_seen": AT,
        "metadata": {"qrCode": "data:image/png;base64,AAAA", "reason": "scan the code", "retryAt": 5},
        "status_updated_at": AT, "desired_state": None, "breaker_tripped_at": None, "breaker_reason": None,
        "last_ready_at": None, "paired": False, "owner": None,
    }
    return {**base, **overrides}


def test_a_session_shows_its_status_without_the_qr_code() -> None:
    view = session_view(PhoneSession.from_row(row()))
    assert view == {
        "companyId": "acme", "phoneIndex": 0, "connectionType": "wwebjs", "status": "qr",
        "phoneNumber": "+60 12-345 6789", "lastSeen": AT.isoformat(), "updatedAt": AT.isoformat(),
        "qrAvailable": True, "pairingCode": None, "reason": "scan the code", "retryAt": 5, "desiredState": "running",
        "paired": False, "breaker": {"open": False, "reason": None, "trippedAt": None}, "lastReadyAt": None,
        "owner": None, "stale": True, "metadata": {"reason": "scan the code", "retryAt": 5},
    }
    assert TypeAdapter(SessionView).validate_python(view) == view


def test_a_phone_without_status_is_pending_and_an_owned_one_not_stale() -> None:
    phone = PhoneSession.from_row(row(status=None, metadata=None, owner="wwebjs@h:1"))
    assert (phone.status, phone.metadata, phone.qr_code, phone.stale) == ("pending", {}, None, False)
    pairing = PhoneSession.from_row(row(status="pairing_code", metadata={"pairingCode": "ABCD-1234"}))
    assert (pairing.pairing_code, pairing.qr_available) == ("ABCD-1234", False)


def test_phone_cards_show_the_session_or_the_cloud_api_ids() -> None:
    wwebjs = phone_card(PhoneSession.from_row(row()))
    assert wwebjs["kind"] == "wwebjs" and wwebjs["qrAvailable"] is True and "metaWabaId" not in wwebjs
    assert wwebjs["breaker"] == {"open": False, "reason": None} and wwebjs["metadata"] == {
        "reason": "scan the code", "retryAt": 5}
    cloud = phone_card(PhoneSession.from_row(row(
        phone_index=1, connection_type="meta_direct", status="error", meta_waba_id="w1",
        metadata={"error": "token expired", "verification": {"ok": False}})))
    assert cloud["kind"] == "cloud" and cloud["reason"] == "token expired" and cloud["metaWabaId"] == "w1"
    assert cloud["verification"] == {"ok": False} and "qrAvailable" not in cloud
    assert counts([wwebjs, cloud], 3) == {"total": 2, "connected": 0, "meta": 1, "wwebjs": 1, "disconnected": 1,
                                          "activeNow": 3}
    assert TypeAdapter(PhoneCard).validate_python(cloud) == cloud


def test_a_session_command_names_where_to_poll_it_and_why_it_failed() -> None:
    command = SessionCommand.from_row({
        "id": 7, "company_id": "acme", "phone_index": 0, "action": "logout", "args": {}, "state": "failed",
        "result": {"error": "not paired"}, "requested_by": "admin", "handled_by": "wwebjs", "created_at": AT,
        "handled_at": None})
    assert command.failure == "logout failed: not paired"
    assert command.as_json() == {
        "id": 7, "companyId": "acme", "phoneIndex": 0, "action": "logout", "args": {}, "state": "failed",
        "result": {"error": "not paired"}, "requestedBy": "admin", "handledBy": "wwebjs",
        "createdAt": AT.isoformat(), "handledAt": None, "url": "/api/sessions/acme/0/commands/7"}


def test_recent_values_merge_into_their_buckets_and_small_series_fold_into_other() -> None:
    rolled = [charts.Point(60, "meta", 2.0), charts.Point(120, "meta p50", 100.0)]
    recent = [charts.Point(60, "meta", 1.0), charts.Point(120, "meta p50", 150.0), charts.Point(180, None, 1.0)]
    merged = {p.key: p.value for p in charts._merge_recent("sent", rolled, recent)}
    assert merged == {(60, "meta"): 3.0, (120, "meta p50"): 250.0, (180, "None"): 1.0}
    latency = {p.key: p.value for p in charts._merge_recent("latency", rolled, recent)}
    assert latency[(120, "meta p50")] == 150.0
    series = charts._series(charts._merge_recent("sent", rolled, recent), [60, 120, 180])
    assert series == [{"label": "-", "values": [None, None, 1.0]}, {"label": "meta", "values": [3.0, None, None]},
                      {"label": "meta p50", "values": [None, 250.0, None]}]
    top = charts._top([{"label": str(i), "values": [float(i), None]} for i in range(10)], 8)
    assert [s["label"] for s in top] == ["9", "8", "7", "6", "5", "4", "3", "2", "other"]
    assert top[-1]["values"] == [1.0, None]


def test_openapi_names_every_schema_once() -> None:
    """Two models of one name would make FastAPI rename both (``module__Name``): a public change."""
    from bisnesgpt.processes.roles import build_components
    from bisnesgpt.processes.runtime import build_app

    ctx = ProcessContext(settings=Settings(encryption_key=SecretStr("ab" * 32)), role="api", process_name="api",
                         database_url="postgresql://unused/db", redis_url="redis://unused", db=MagicMock(),
                         redis=MagicMock(), queues=MagicMock(), events=MagicMock(), coordinator=MagicMock(),
                         holder="test", namespace="test")
    spec = build_app(ctx, build_components("api", ctx), MagicMock()).openapi()
    names = set(spec["components"]["schemas"])
    assert not {n for n in names if "__" in n}
    assert {"Removed", "SendResponse", "MessageDetail", "PhoneConfigRow", "BotStatus", "Problem"} <= names
