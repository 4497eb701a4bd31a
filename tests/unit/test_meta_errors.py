"""Graph error classification and the usage header (pure functions)."""

from __future__ import annotations

import json

import pytest

from bisnesgpt.engines.meta.errors import (
    CloudApiError,
    PermanentGraphError,
    PhoneAuthError,
    PhoneBlockedError,
    RecipientBackoffError,
    RetryableGraphError,
    retry_after_from_headers,
)

pytestmark = pytest.mark.unit


def envelope(code: int, message: str = "(#1) x", **extra: object) -> bytes:
    return json.dumps({"error": {"message": message, "type": "OAuthException", "code": code, **extra}}).encode()


@pytest.mark.parametrize(("code", "http_status", "expected"), [
    (4, 400, RetryableGraphError), (80007, 400, RetryableGraphError), (130429, 400, RetryableGraphError),
    (131000, 500, RetryableGraphError), (131016, 503, RetryableGraphError), (131057, 503, RetryableGraphError),
    (133004, 503, RetryableGraphError), (131056, 400, RecipientBackoffError), (190, 401, PhoneAuthError),
    (0, 401, PhoneAuthError), (368, 400, PhoneBlockedError), (131031, 400, PhoneBlockedError),
    (100, 400, PermanentGraphError), (131008, 400, PermanentGraphError), (131009, 400, PermanentGraphError),
    (131026, 400, PermanentGraphError), (131047, 400, PermanentGraphError), (131051, 400, PermanentGraphError),
    (132001, 404, PermanentGraphError), (132015, 400, PermanentGraphError), (999999, 500, RetryableGraphError),
])
def test_codes_map_to_their_class(code: int, http_status: int, expected: type[CloudApiError]) -> None:
    error = CloudApiError.from_response(http_status, envelope(code, f"(#{code}) Some title"))
    assert type(error) is expected
    assert error.code == code and error.code_text == str(code)
    assert error.error_title == "Some title"


def test_non_envelope_answers_classify_by_http_status() -> None:
    assert type(CloudApiError.from_response(502, b"<html>bad gateway</html>")) is RetryableGraphError
    assert type(CloudApiError.from_response(401, b"")) is PhoneAuthError
    error = CloudApiError.from_response(418, b"nope")
    assert type(error) is PermanentGraphError and error.code_text == "HTTP_418"


def test_usage_header_gives_the_regain_time_in_ms() -> None:
    usage = {"123": [{"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 2}],
             "456": [{"type": "whatsapp", "estimated_time_to_regain_access": 5}]}
    assert retry_after_from_headers({"X-Business-Use-Case-Usage": json.dumps(usage)}) == 5 * 60_000
    assert retry_after_from_headers({"x-business-use-case-usage": "not json"}) is None
    assert retry_after_from_headers({"Retry-After": "7"}) == 7000
    error = CloudApiError.from_response(400, envelope(80007), {"X-Business-Use-Case-Usage": json.dumps(usage)})
    assert isinstance(error, RetryableGraphError) and error.retry_after_ms == 300_000
