"""Webhook building blocks without services: signatures, destination rules, backoff, body shape."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from bisnesgpt.api.problems import problem_for
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.webhooks.backoff import retry_delay
from bisnesgpt.webhooks.payload import encode_body, event_document
from bisnesgpt.webhooks.service import validate_event_types, validate_headers
from bisnesgpt.webhooks.signing import new_secret, signature_header, verify_signature
from bisnesgpt.webhooks.urls import (
    DestinationRefused,
    IPAddress,
    parse_endpoint_url,
    refusal_reason,
    resolve_destination,
)
from tests.support.webhooks import readme_python_verifier

pytestmark = pytest.mark.unit


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    header = signature_header(["whsec_abc"], body, timestamp=1_700_000_000)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_rotation_overlap_signs_with_both_secrets() -> None:
    old, new = new_secret(), new_secret()
    assert old != new and new.startswith("whsec_")
    body = b'{"x":1}'
    header = signature_header([new, old], body)
    assert header.count("v1=") == 2
    assert verify_signature(new, body, header) and verify_signature(old, body, header)
    assert not verify_signature(new_secret(), body, header)


def test_verification_rejects_tampering_and_stale_timestamps() -> None:
    secret = new_secret()
    header = signature_header([secret], b"original", timestamp=1_000_000)
    assert verify_signature(secret, b"original", header, now=1_000_100)
    assert not verify_signature(secret, b"tampered", header, now=1_000_100)
    assert not verify_signature(secret, b"original", header, now=1_000_000 + 301)
    assert not verify_signature(secret, b"original", "v1=deadbeef", now=1_000_000)
    assert not verify_signature(secret, b"original", "garbage", now=1_000_000)


def test_readme_python_helper_agrees_with_the_signer() -> None:
    verify = readme_python_verifier()
    secret = new_secret()
    body = '{"id":"evt_é"}'.encode()
    header = signature_header([secret], body)
    assert verify(secret, body, header) is True
    assert verify(secret, body + b" ", header) is False
    assert verify(new_secret(), body, header) is False
    assert verify(secret, body, signature_header([secret], body, timestamp=1)) is False  # too old


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fc00::1", "private"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "not globally routable"), ("::ffff:127.0.0.1", "loopback"), ("192.0.2.10", "private"),
    ("93.184.216.34", None), ("2606:4700::1111", None), ("8.8.8.8", None),
])
def test_address_classification(address: str, reason: str | None) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/x", "http:// or https://"), ("file:///etc/passwd", "http:// or https://"),
    ("https:///nohost", "no host"), ("https://user:pw@example.com/", "credentials"),
    ("https://example.com/#frag", "fragment"), ("https://example.com:99999/", "invalid port"),
    ("https://exa mple.com/", "whitespace"), ("example.com/hook", "http:// or https://"),
])
def test_url_syntax_is_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(DestinationRefused, match=message) as caught:
        parse_endpoint_url(url)
    assert problem_for(caught.value).status == 422 and caught.value.errors[0]["field"] == "url"


def test_url_parts_for_pinned_connection() -> None:
    target = parse_endpoint_url("https://Hooks.Example.com:8443/in?x=1")
    assert (target.scheme, target.host, target.port, target.path_and_query) == ("https", "hooks.example.com", 8443,
                                                                               "/in?x=1")
    assert target.host_header == "hooks.example.com:8443"
    assert target.url_for_address(ipaddress.ip_address("2606:4700::1111")) == "https://[2606:4700::1111]:8443/in?x=1"
    assert parse_endpoint_url("http://example.com").host_header == "example.com"


class FixedResolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses: list[IPAddress] = [ipaddress.ip_address(a) for a in addresses]

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        return self.addresses


async def test_resolved_addresses_are_checked_not_just_the_text() -> None:
    target = parse_endpoint_url("https://hooks.example.com/x")
    assert await resolve_destination(target, FixedResolver("93.184.216.34"), allow_private=False)
    with pytest.raises(DestinationRefused, match=r"hooks.example.com resolves to 10.0.0.5, a private address"):
        await resolve_destination(target, FixedResolver("93.184.216.34", "10.0.0.5"), allow_private=False)
    allowed = await resolve_destination(target, FixedResolver("10.0.0.5"), allow_private=True)
    assert [str(a) for a in allowed] == ["10.0.0.5"]
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1, a loopback address"):
        await resolve_destination(parse_endpoint_url("http://127.0.0.1:9/"), FixedResolver(), allow_private=False)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, base=10, max_delay=3600, rng=rng) for n in range(1, 16)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(3600, 10 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 3600
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed ladder


def test_event_document_is_canonical_and_raw_only_on_request() -> None:
    created = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    common = {"event_id": "evt_1", "event_type": "message.inbound", "created_at": created, "company_id": "acme",
              "phone_index": 0, "data": {"text": "hi"}, "raw": {"provider": "payload"}}
    without = event_document(**common, include_raw=False)
    assert without == {"id": "evt_1", "type": "message.inbound", "created_at": "2025-01-02T03:04:05.678901Z",
                       "company_id": "acme", "phone_index": 0, "data": {"text": "hi"}}
    assert event_document(**common, include_raw=True)["data"] == {"text": "hi", "raw": {"provider": "payload"}}
    assert encode_body(without).startswith(b'{"id":"evt_1","type":"message.inbound"')


def test_event_filter_and_custom_header_validation() -> None:
    assert validate_event_types(None) == []
    assert validate_event_types(["message.status", "message.status"]) == ["message.status"]
    with pytest.raises(ValidationFailed, match="unknown event type"):
        validate_event_types(["message.sent"])
    assert validate_headers({"Authorization": "Bearer x"}) == {"Authorization": "Bearer x"}
    for bad in ({"X-Bisnesgpt-Signature": "x"}, {"Host": "evil"}, {"Bad Name": "x"}, {"A": "x\r\nB: y"},
                {f"H{i}": "v" for i in range(11)}, {"a": "1", "A": "2"}):
        with pytest.raises(ValidationFailed):
            validate_headers(bad)


def test_webhook_settings_defaults_and_bad_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from pydantic import SecretStr

    from bisnesgpt.config import Role, load_settings
    from bisnesgpt.core.errors import ConfigError
    from bisnesgpt.db.pool import Database
    from bisnesgpt.processes.roles import build_components
    from bisnesgpt.webhooks.component import WebhookDeliveryComponent
    from tests.support.health import new_context

    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("WEBHOOK_")]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.webhook_allow_private_destinations is False
    assert settings.webhook_timeout_seconds == 10
    assert settings.webhook_retry_horizon_seconds == 24 * 3600
    assert settings.webhook_endpoint_concurrency >= 1
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigError, match="WEBHOOK_TIMEOUT_SECONDS"):
        load_settings()
    monkeypatch.delenv("WEBHOOK_TIMEOUT_SECONDS")
    # The api role runs the delivery worker, and so does legacy (every role in one process).
    def components(role: Role) -> list[Any]:
        # Built as the runtime builds them; nothing is opened or connected by construction.
        ctx = new_context(settings.model_copy(update={"encryption_key": SecretStr("ab" * 32)}), role, role,
                          database_url="postgresql://127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0",
                          db=Database("postgresql://127.0.0.1:1/none", max_size=1))
        return build_components(role, ctx)

    for role in ("api", "legacy"):
        assert any(isinstance(c, WebhookDeliveryComponent) for c in components(role))
    assert not any(isinstance(c, WebhookDeliveryComponent) for c in components("meta"))
