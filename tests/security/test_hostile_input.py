"""Hostile input gets a 4xx problem, never a 5xx: every request below answered 500 before.

NUL bytes (PostgreSQL's ``CharacterNotInRepertoireError``), lone surrogates, ids past bigint,
``NaN``/``Infinity``, dates that leave PostgreSQL's range once moved to UTC, and JSON nested 500
and 100,000 deep, against a real ``bisnesgpt run api``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.e2e.conftest import module_db, module_redis
from tests.support.pipeline import ADMIN_KEY, ApiServer, Tenant, seed_tenant

pytestmark = [pytest.mark.security, pytest.mark.timeout(120)]
__all__ = ["module_db", "module_redis"]

PERSON = "60123456789"


@pytest.fixture(scope="module")
async def hostile(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                  module_redis: str) -> AsyncIterator[tuple[ApiServer, Tenant, str]]:
    server = ApiServer(tmp_path_factory.mktemp("api"), module_db[0], module_redis,
                       WEBHOOK_ALLOW_PRIVATE_DESTINATIONS="true", WEBHOOK_DELIVERY_ENABLED="false")
    tenant = await seed_tenant(module_db[1], "hostile", {0: "wwebjs", 1: "meta_direct"})
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers) as client:
            created = await client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
            assert created.status_code == 201, created.text
        yield server, tenant, created.json()["id"]
    finally:
        server.stop()


def _nested(depth: int) -> bytes:
    return b'{"to":"60123456789","type":"text","text":{"body":"x"},"deep":' + b"[" * depth + b"]" * depth + b"}"


def _template(components: bytes) -> bytes:
    """A template send to the Meta phone: its components are free-form JSON, stored as they come."""
    return b'{"phoneIndex":1,"templateName":"order_update","templateLang":"en_US","templateComponents":[%s]}' % (
        components)


TEMPLATE = f"/api/v2/messages/template/hostile/{PERSON}"


def _cases(endpoint: str) -> list[tuple[str, str, str, bytes | None]]:
    """(what, method, path, raw JSON body)."""
    text = b'{"to":"60123456789","type":"text","text":{"body":"%s"}}'
    return [
        ("NUL in a text field", "POST", "/api/v1/messages", text % b"a\\u0000b"),
        ("lone surrogate in a text field", "POST", "/api/v1/messages", text % b"a\\ud800b"),
        ("NUL in a v2 path id", "POST", f"/api/v2/messages/text/hostile/{PERSON}%00", b'{"message":"x"}'),
        ("NUL in a message id", "GET", "/api/v1/messages/abc%00def", None),
        ("NUL in a query", "GET", "/api/v1/messages?chatId=60123456789%00@c.us", None),
        ("NUL in a webhook id", "GET", "/api/v1/webhooks/whk_%00", None),
        ("NUL in a webhook URL", "POST", "/api/v1/webhooks", b'{"url":"http://127.0.0.1:9/a\\u0000b"}'),
        ("delivery id past bigint", "GET", f"/api/v1/webhooks/{endpoint}/deliveries/99999999999999999999", None),
        ("retry of a delivery id past bigint", "POST",
         f"/api/v1/webhooks/{endpoint}/deliveries/99999999999999999999/retry", None),
        ("page cursor past bigint", "GET", f"/api/v1/webhooks/{endpoint}/deliveries?before=99999999999999999999",
         None),
        ("NaN in a number", "POST", "/api/v1/messages",
         b'{"to":"60123456789","type":"text","text":{"body":"x"},"phoneIndex":NaN}'),
        ("Infinity in a number", "POST", "/api/v1/messages",
         b'{"to":"60123456789","type":"text","text":{"body":"x"},"phoneIndex":-Infinity}'),
        ("date before year 1 in UTC", "POST",
         f"/api/v1/webhooks/{endpoint}/replay?since=0001-01-01T00:00:00%2B14:00", None),
        ("date after year 9999 in UTC", "GET", "/api/v1/usage?to=9999-12-31T23:59:59-14:00", None),
        ("usage from year 1", "GET", "/api/v1/usage?from=0001-01-01T00:00:00%2B14:00", None),
        ("JSON nested 500 deep", "POST", "/api/v1/messages", _nested(500)),
        ("JSON nested 100,000 deep", "POST", "/api/v1/messages", _nested(100_000)),
        ("NaN in template components", "POST", TEMPLATE, _template(b'{"type":"body","n":NaN}')),
        ("Infinity in template components", "POST", TEMPLATE, _template(b'{"type":"body","n":Infinity}')),
        ("NUL in template components", "POST", TEMPLATE, _template(b'{"type":"body","t":"a\\u0000"}')),
        ("template components nested 500 deep", "POST", TEMPLATE,
         _template(b'{"type":"body","p":' + b"[" * 500 + b"]" * 500 + b"}")),
        ("template components nested 100,000 deep", "POST", TEMPLATE,
         _template(b'{"type":"body","p":' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        ("UTF-16 body", "POST", "/api/v1/messages",
         '{"to":"60123456789","type":"text","text":{"body":"x"}}'.encode("utf-16")),
    ]


CASE_NAMES = [c[0] for c in _cases("whk_x")]


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("key", ["company", "operator"])
async def test_hostile_input_is_a_4xx_problem(hostile: tuple[ApiServer, Tenant, str], name: str, key: str) -> None:
    server, tenant, endpoint = hostile
    what, method, path, body = next(c for c in _cases(endpoint) if c[0] == name)
    headers = {"Authorization": f"Bearer {tenant.api_key if key == 'company' else ADMIN_KEY}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key == "operator" and "?" not in path and method == "POST" and path.startswith("/api/v1/messages"):
        path += "?companyId=hostile"
    if "template" in name:
        headers["Idempotency-Key"] = f"hostile-{key}-{abs(hash(name))}"  # the body is fingerprinted too
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        response = await client.request(method, path, content=body)
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]
    assert "Traceback" not in response.text


async def test_nothing_hostile_was_stored_and_the_api_still_serves(hostile: tuple[ApiServer, Tenant, str],
                                                                   module_db: tuple[str, Database]) -> None:
    server, tenant, _endpoint = hostile
    async with httpx.AsyncClient(base_url=server.url, headers=tenant.headers) as client:
        ok = await client.post("/api/v1/messages", json={"to": PERSON, "type": "text", "text": {"body": "fine"}})
        assert ok.status_code == 202, ok.text
    assert "unhandled error" not in server.output()
    contents = [r["content"] for r in await module_db[1].fetch("SELECT content FROM messages")]
    assert contents.count("fine") == 1
    assert all("\ufffd" not in (c or "") for c in contents)

