"""The pure parts of the edge and of storable JSON, without a server."""

from __future__ import annotations

import json

import pytest

from bisnesgpt.api.edge import EdgePolicy, JsonRefused, inspect_json, route_family
from bisnesgpt.config import Settings
from bisnesgpt.core.storable import ESCAPED_KEY, storable

pytestmark = pytest.mark.security


@pytest.mark.parametrize(("body", "status"), [
    (b'{"a": NaN}', 422), (b'{"a": [Infinity]}', 422), (b'{"a": "\\u0000"}', 422), (b'{"\\ud800": 1}', 422),
    (b"[" * 33 + b"]" * 33, 422), (b"[" * 100_000 + b"]" * 100_000, 422), ('{"a": 1}'.encode("utf-16"), 400),
    (b"\xff\xfe{}", 400),
])
def test_refused_json(body: bytes, status: int) -> None:
    with pytest.raises(JsonRefused) as refused:
        inspect_json(body, max_depth=32, storable_strings=True)
    assert refused.value.status == status


@pytest.mark.parametrize("body", [b'{"a": "\\ud83d\\ude00 ok"}', b"[" * 32 + b"]" * 32, b"not json", b"",
                                  b'{"n": 1e308}'])
def test_accepted_json(body: bytes) -> None:
    inspect_json(body, max_depth=32, storable_strings=True)


def test_webhook_strings_are_not_judged_by_the_guard() -> None:
    inspect_json(b'{"a": "\\u0000\\ud800"}', max_depth=32, storable_strings=False)


def test_storable_replaces_and_keeps_every_original_escaped() -> None:
    original = {"text": {"body": "a\x00b\ud800", "ok": "fine"}, "list": ["\x00"], "k\x00": "v", "n": 1}
    stored = storable(original)
    assert stored == {
        "text": {"body": "a\ufffdb\ufffd", "ok": "fine", ESCAPED_KEY: {"body": json.dumps("a\x00b\ud800")}},
        "list": ["\ufffd"], "k\ufffd": "v", "n": 1, ESCAPED_KEY: {"k\ufffd": json.dumps({"k\x00": "v"})}}
    assert json.loads(stored["text"][ESCAPED_KEY]["body"]) == "a\x00b\ud800"  # type: ignore[index,call-overload]
    assert "\x00" not in json.dumps(stored, ensure_ascii=False)
    assert storable({"a": ["b"]}) == {"a": ["b"]}


def test_route_families_and_their_limits() -> None:
    policy = EdgePolicy.from_settings(Settings(body_limit_sends=1000, body_limit_default=2000, media_max_bytes=10))
    assert route_family("POST", "/api/v2/messages/template/acme/6012") == "sends"
    assert route_family("POST", "/api/messages/react/acme/m1") == "sends"
    assert route_family("POST", "/webhook/meta") == "webhooks"
    assert route_family("POST", "/api/meta/webhook") == "webhooks"
    assert route_family("POST", "/api/v1/media") == "media"
    assert route_family("POST", "/api/v1/webhooks") == "default"
    assert policy.limits["sends"] == 1000 and policy.limits["default"] == 2000
    assert policy.limits["media"] == 10 + 1024 * 1024


def test_proxies_and_hosts() -> None:
    policy = EdgePolicy.from_settings(Settings(forwarded_allow_ips="10.0.0.0/8, ::1",
                                               trusted_hosts="a.example,*.b.example"))
    assert policy.trusts_proxy("10.1.2.3") and policy.trusts_proxy("::1")
    assert not policy.trusts_proxy("127.0.0.1") and not policy.trusts_proxy(None) and not policy.trusts_proxy("x")
    assert policy.allows_host("a.example") and policy.allows_host("gw.b.example")
    assert not policy.allows_host("b.example.evil") and not policy.allows_host("evil.example")
    assert EdgePolicy.from_settings(Settings()).allows_host("anything")
    assert not EdgePolicy.from_settings(Settings()).trusts_proxy("127.0.0.1")
