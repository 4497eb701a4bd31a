"""The console's error code names: every code the engines can store has one, and the lookup is forgiving."""

from __future__ import annotations

import re
from pathlib import Path

from bisnesgpt.dashboard.error_names import CLOUD_API_NAMES, ERROR_NAMES, WHATSAPP_WEB_NAMES, error_name
from bisnesgpt.engines.meta import errors as meta_errors
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire

SRC = Path(__file__).resolve().parents[2] / "src" / "bisnesgpt"


def test_the_codes_the_brief_names_read_as_operators_say_them() -> None:
    assert error_name(131047) == "re-engagement window closed (24 h)"
    assert error_name("131026") == "not deliverable"
    assert error_name(131031) == "account locked"
    assert error_name(368) == "temporarily blocked for policy"
    assert error_name(190) == "access token expired/invalid"
    assert error_name(130429) == "throughput limit"
    assert error_name(131056) == "pair rate limit"
    assert error_name(100) == "invalid parameter"
    assert error_name(131053) == "media upload error"
    assert error_name("NOT_ON_WHATSAPP") == "number not on WhatsApp"
    assert error_name(" daily_limit_reached ") == "daily sending cap reached"
    assert error_name("MEDIA_URL_REFUSED") == "media URL refused (not allowed)"
    assert error_name(None) is None
    assert error_name("999999") is None


def test_every_graph_code_the_meta_engine_classifies_has_a_name() -> None:
    classified = (meta_errors.RETRYABLE_CODES | meta_errors.RECIPIENT_BACKOFF_CODES | meta_errors.PHONE_AUTH_CODES
                  | meta_errors.PHONE_BLOCKED_CODES | meta_errors.PERMANENT_CODES)
    assert sorted(c for c in classified if str(c) not in CLOUD_API_NAMES) == []


def test_every_code_the_whatsapp_web_engine_stores_has_a_name() -> None:
    written = set()
    for path in (SRC / "engines" / "wwebjs").rglob("*.py"):
        written |= set(re.findall(r'code="([A-Z][A-Z0-9_]+)"', path.read_text()))
    written |= set(sandbox_wire.SEND_ERRORS.values()) | set(sandbox_wire.GROUP_ERRORS.values())
    assert {"NOT_ON_WHATSAPP", "DAILY_LIMIT_REACHED", "MEDIA_URL_REFUSED"} <= written  # the scan finds them
    assert sorted(written - set(WHATSAPP_WEB_NAMES)) == []


def test_names_are_short_and_the_table_has_no_blank_entry() -> None:
    assert all(name.strip() and len(name) <= 60 for name in ERROR_NAMES.values())
    assert all(code == code.strip().upper() for code in ERROR_NAMES)
