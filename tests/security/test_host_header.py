"""Host header and proxy headers: nothing a client names in them is believed without reason.

Before, ``GET /api/v1/webhooks/whk_x/`` with ``Host: evil.example`` redirected to
``http://evil.example/…``; ``X-Forwarded-For`` was believed from any loopback peer; the
dashboard's origin check believed ``X-Forwarded-Host`` from anyone, so a cross-site form with a
forged header passed it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.e2e.conftest import module_db, module_redis
from tests.support.pipeline import ADMIN_KEY, ApiServer, Tenant, seed_tenant

pytestmark = [pytest.mark.security, pytest.mark.timeout(120)]
__all__ = ["module_db", "module_redis"]


@pytest.fixture(scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory, module_db: tuple[str, Database],
                  module_redis: str) -> AsyncIterator[tuple[ApiServer, ApiServer, Tenant]]:
    """(defaults: no proxy trusted, any host; behind a proxy: 127.0.0.1 trusted, two host names), a tenant."""
    plain = ApiServer(tmp_path_factory.mktemp("plain"), module_db[0], module_redis, AUTH_FAILURE_LIMIT="3")
    proxied = ApiServer(tmp_path_factory.mktemp("proxied"), module_db[0], module_redis, instance_id=1,
                        name="proxied", FORWARDED_ALLOW_IPS="127.0.0.1", TRUSTED_HOSTS="127.0.0.1,*.example.com",
                        AUTH_FAILURE_LIMIT="0")
    tenant = await seed_tenant(module_db[1], "hosts", {0: "wwebjs"})
    try:
        await plain.start()
        await proxied.start()
        yield plain, proxied, tenant
    finally:
        plain.stop()
        proxied.stop()


@pytest.mark.parametrize("path", ["/api/v1/webhooks/whk_x/", "/api/v1/webhooks/", "/api/v1/messages/",
                                  "/dashboard/login/"])
async def test_no_redirect_reflects_the_host_header(servers: tuple[ApiServer, ApiServer, Tenant], path: str) -> None:
    plain, _proxied, tenant = servers
    async with httpx.AsyncClient(base_url=plain.url, headers=tenant.headers) as client:
        response = await client.get(path, headers={"Host": "evil.example"})
    assert "evil.example" not in response.headers.get("location", "")
    assert not 300 <= response.status_code < 400 or response.headers["location"].startswith("/")
    assert response.status_code in (200, 404), response.text  # served in place, as without the slash


async def test_trusted_hosts_refuses_other_hosts(servers: tuple[ApiServer, ApiServer, Tenant]) -> None:
    _plain, proxied, tenant = servers
    async with httpx.AsyncClient(base_url=proxied.url, headers=tenant.headers) as client:
        refused = await client.get("/api/v1/messages", headers={"Host": "evil.example"})
        assert refused.status_code == 400
        assert refused.json()["type"].endswith("/host-not-allowed")
        forged = await client.get("/api/v1/messages", headers={"X-Forwarded-Host": "evil.example"})
        assert forged.status_code == 400  # what the (trusted) proxy says the client named
        assert (await client.get("/api/v1/messages", headers={"Host": "gw.example.com"})).status_code == 200
        assert (await client.get("/api/v1/messages")).status_code == 200


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_failure_limit(
        servers: tuple[ApiServer, ApiServer, Tenant]) -> None:
    plain, _proxied, tenant = servers
    async with httpx.AsyncClient(base_url=plain.url) as client:
        statuses = [(await client.get("/api/v1/messages", headers={"X-API-Key": f"bgpt_wrong{i}",
                                                                   "X-Forwarded-For": f"203.0.113.{i}"})).status_code
                    for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]  # one address (the real peer), however many it claims
        # (the lock-out is this test's own: no other test of the module uses the plain server's failures)
        assert (await client.get("/api/v1/messages", headers=tenant.headers)).status_code == 429


async def _login_form(client: httpx.AsyncClient) -> str:
    form = await client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return token.group(1)


async def test_the_dashboard_origin_check_believes_x_forwarded_host_only_from_a_trusted_proxy(
        servers: tuple[ApiServer, ApiServer, Tenant]) -> None:
    plain, proxied, _tenant = servers
    cross_site = {"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"}
    async with httpx.AsyncClient(base_url=proxied.url) as client:
        # Behind the trusted proxy, the host it names is the one the browser saw.
        token = await _login_form(client)
        behind = await client.post("/dashboard/login", data={"api_key": ADMIN_KEY, "csrf": token},
                                   headers={"Origin": "https://gw.example.com", "X-Forwarded-Host": "gw.example.com",
                                            "X-Forwarded-Proto": "https"})
        assert behind.status_code == 303, behind.text[:300]
        assert "secure" in behind.headers["set-cookie"].lower()  # X-Forwarded-Proto believed from the proxy
    async with httpx.AsyncClient(base_url=plain.url) as client:
        token = await _login_form(client)
        forged = await client.post("/dashboard/login", data={"api_key": ADMIN_KEY, "csrf": token}, headers=cross_site)
        assert forged.status_code == 403, forged.text[:300]
