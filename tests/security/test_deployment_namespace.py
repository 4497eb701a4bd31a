"""Two deployments on one Redis server never hear each other's live session events.

Pub/sub ignores logical databases. Before, deployments told their messages apart only by a
``redisDb`` stamp, and an unstamped message — the Node server's, or any other publisher's —
was taken as the deployment's own: another deployment's session events, QR codes and pairing
codes showed on ``/api/sessions/{company}/events``. Now every channel carries the deployment's
namespace (``REDIS_NAMESPACE``; by default the PostgreSQL database's name and the Redis db).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from bisnesgpt.config import Settings
from bisnesgpt.coordination.channels import BOT_EVENT, channel_name, deployment_namespace, publish
from bisnesgpt.db.pool import Database
from bisnesgpt.infra.redis import redis_client
from tests.conftest import create_database, drop_database
from tests.support.pipeline import ApiServer, Tenant, seed_tenant
from tests.support.servers import redis_database, unique_name

pytestmark = pytest.mark.security


class Deployment:
    def __init__(self, api: ApiServer, tenant: Tenant, database_url: str, redis_url: str) -> None:
        self.api, self.tenant, self.database_url, self.redis_url = api, tenant, database_url, redis_url

    @property
    def namespace(self) -> str:
        return deployment_namespace(Settings().redis_namespace, self.database_url, self.redis_url)

    async def session_event(self, marker: str) -> None:
        """What this deployment's wwebjs process publishes when a session shows a QR code."""
        client = redis_client(self.redis_url)
        try:
            await publish(client, BOT_EVENT, _qr_event(self.tenant.company_id, marker), namespace=self.namespace)
        finally:
            await client.aclose()


def _qr_event(company_id: str, marker: str) -> dict[str, object]:
    return {"eventType": "status_update", "companyId": company_id, "phoneIndex": 0, "status": "qr",
            "metadata": {"qrCode": marker}}


@pytest.fixture
async def deployments(tmp_path: Path, pg_server_url: str, template_database: str,
                      redis_server_url: str) -> AsyncIterator[tuple[Deployment, Deployment]]:
    """Two deployments, each with its own database and Redis db on the same servers, and the same company."""
    async with AsyncExitStack() as stack:
        out = []
        company = f"co-{uuid.uuid4().hex[:8]}"
        for name in ("a", "b"):
            db_name = unique_name(f"bgpt_dep_{name}")
            url = await create_database(pg_server_url, db_name, template=template_database)
            stack.push_async_callback(drop_database, pg_server_url, db_name)
            redis_url = stack.enter_context(redis_database(redis_server_url))
            db = Database(url, max_size=2)
            await db.open()
            stack.push_async_callback(db.close)
            tenant = await seed_tenant(db, company)
            api = ApiServer(tmp_path / name, url, redis_url, name=f"api-{name}")
            stack.callback(api.stop)
            out.append(Deployment(api, tenant, url, redis_url))
        await asyncio.gather(*(d.api.start() for d in out))
        yield out[0], out[1]


async def _events(deployment: Deployment, wanted: str, timeout: float = 20) -> list[str]:
    """The QR codes the deployment's stream shows until ``wanted`` arrives."""
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=deployment.api.url, headers=deployment.tenant.headers,
                                 timeout=timeout) as client:
        async with client.stream("GET", f"/api/sessions/{deployment.tenant.company_id}/events") as response:
            assert response.status_code == 200
            async with asyncio.timeout(timeout):
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        qr = (json.loads(line[6:]).get("metadata") or {}).get("qrCode")
                        if qr:
                            seen.append(str(qr))
                            if qr == wanted:
                                return seen
    return seen


async def test_another_deployment_on_the_same_redis_server_is_not_heard(
        deployments: tuple[Deployment, Deployment]) -> None:
    a, b = deployments
    assert a.namespace != b.namespace and a.redis_url != b.redis_url
    stream = asyncio.create_task(_events(a, "a-own"))
    await asyncio.sleep(1.5)  # the stream is open and the coordinator subscribed
    await b.session_event("b-qr")  # deployment B's wwebjs, the same company id
    client = redis_client(b.redis_url)
    try:  # an unstamped publisher on the original channel name (the Node server of another deployment)
        await client.publish(BOT_EVENT, json.dumps(_qr_event(a.tenant.company_id, "node-qr")))
        await client.publish(channel_name(a.namespace, BOT_EVENT),  # A's channel, but stamped as B's
                             json.dumps({**_qr_event(a.tenant.company_id, "b-stamped"), "namespace": b.namespace}))
    finally:
        await client.aclose()
    await asyncio.sleep(0.5)
    await a.session_event("a-own")
    assert await stream == ["a-own"]
