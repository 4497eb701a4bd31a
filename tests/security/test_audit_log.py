"""The audit log: every change by a key or an operator — who, which key, from where, what, when.

Before, nothing recorded who created, changed or deleted a webhook endpoint, a phone or a key
through the API: a tenant could not tell which of its keys (or an operator) made a change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.tenancy import store as tenancy
from bisnesgpt.tenancy.store import KeyLimits
from tests.support.pipeline import ADMIN_KEY, ENCRYPTION_KEY, ApiServer, seed_tenant
from tests.support.procs import clean_env

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]

OPERATOR = {"Authorization": f"Bearer {ADMIN_KEY}"}
HOOK = {"url": "https://8.8.8.8/hook"}  # a public address: registration needs no DNS


async def _audit(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit", headers=headers, params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_changes_are_recorded_with_who_and_where_and_each_tenant_sees_only_its_own(
        api: ApiServer, module_db: tuple[str, Database]) -> None:
    db = module_db[1]
    a = await seed_tenant(db, f"au-{uuid.uuid4().hex[:8]}", {0: "wwebjs"})
    b = await seed_tenant(db, f"au-{uuid.uuid4().hex[:8]}", {0: "wwebjs"})
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
        created = await client.post("/api/v1/webhooks", json=HOOK, headers=a.headers)
        assert created.status_code == 201, created.text
        endpoint = created.json()["id"]
        deleted = await client.delete(f"/api/v1/webhooks/{endpoint}", headers=a.headers)
        assert deleted.status_code in (200, 204), deleted.text
        refused = await client.post("/api/v1/webhooks", json={"url": "not a url"}, headers=a.headers)
        assert refused.status_code == 422
        assert (await client.post("/api/v1/webhooks", json=HOOK, headers=b.headers)).status_code == 201
        assert (await client.post("/api/v1/webhooks", json={**HOOK, "company_id": b.company_id},
                                  headers=OPERATOR)).status_code == 201
        # Not changes by anyone: a wrong key, and a send (recorded as the message itself).
        assert (await client.post("/api/v1/webhooks", json=HOOK,
                                  headers={"Authorization": "Bearer nope"})).status_code == 401
        send = await client.post("/api/v1/messages", headers=a.headers,
                                 json={"to": "60123456789", "type": "text", "text": {"body": "hi"}})
        assert send.status_code == 202, send.text

        mine = await _audit(client, a.headers)
        assert [(e["method"], e["route"], e["status"]) for e in mine] == [
            ("POST", "/api/v1/webhooks", 422), ("DELETE", "/api/v1/webhooks/{endpoint_id}", deleted.status_code),
            ("POST", "/api/v1/webhooks", 201)]
        key_id = await db.fetchval("SELECT key_id FROM audit_log WHERE id = $1", mine[0]["id"])
        assert key_id is not None and all(e["keyId"] == key_id for e in mine)
        assert all(e["actor"] == "company" and e["actorCompanyId"] == a.company_id and e["via"] == "api"
                   and e["clientAddress"] == "127.0.0.1" and e["companyId"] == a.company_id for e in mine)
        assert mine[1]["path"] == f"/api/v1/webhooks/{endpoint}"
        # B sees its own change and the operator's change to it — without the operator's key or address.
        theirs = await _audit(client, b.headers)
        assert [e["actor"] for e in theirs] == ["admin", "company"]
        assert theirs[0]["companyId"] == b.company_id and theirs[0]["keyId"] is None
        assert theirs[0]["clientAddress"] is None
        assert not {e["id"] for e in theirs} & {e["id"] for e in mine}
        # A company key cannot ask for another company; an operator sees all, or one company.
        other = await client.get("/api/v1/audit", headers=a.headers, params={"companyId": b.company_id})
        assert other.status_code == 404  # as for any other company's data: not even whether it exists
        everyone = {e["id"] for e in await _audit(client, OPERATOR, limit=500)}
        assert {e["id"] for e in mine + theirs} <= everyone
        only_b = await _audit(client, OPERATOR, companyId=b.company_id)
        assert [e["id"] for e in only_b] == [e["id"] for e in theirs]
        assert only_b[0]["clientAddress"] == "127.0.0.1"  # an operator sees where its change came from
        # The dashboard's actions are recorded too.
        cleaned = await client.post("/dashboard/api/queues/media-downloads/clean-completed", headers=OPERATOR,
                                    json={"confirm": True})
        assert cleaned.status_code == 200, cleaned.text
        (latest,) = await _audit(client, OPERATOR, limit=1)
        assert (latest["via"], latest["route"], latest["actor"]) == (
            "dashboard", "/dashboard/api/queues/{queue}/clean-completed", "admin")
        # Paging: the cursor walks older entries without repeats.
        first = (await client.get("/api/v1/audit", headers=a.headers, params={"limit": 2})).json()
        assert len(first["entries"]) == 2 and first["next"] == first["entries"][-1]["id"]
        rest = await _audit(client, a.headers, before=first["next"])
        assert [e["id"] for e in first["entries"] + rest] == [e["id"] for e in mine]


async def test_a_limited_key_cannot_read_the_audit_log(api: ApiServer, module_db: tuple[str, Database]) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, f"au-{uuid.uuid4().hex[:8]}")
    async with db.connection() as conn:
        _record, plaintext = await tenancy.create_api_key(conn, company_id=tenant.company_id, name="limited",
                                                          limits=KeyLimits(("messages:read",), None))
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
        response = await client.get("/api/v1/audit", headers={"Authorization": f"Bearer {plaintext}"})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_operators_read_the_audit_log_from_the_command_line(
        tmp_path: Path, api: ApiServer, module_db: tuple[str, Database]) -> None:
    db = module_db[1]
    tenant = await seed_tenant(db, f"au-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
        assert (await client.post("/api/v1/webhooks", json=HOOK, headers=tenant.headers)).status_code == 201
    env = clean_env(DATABASE_URL=module_db[0], ENCRYPTION_KEY=ENCRYPTION_KEY, DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "bisnesgpt", "audit", tenant.company_id, "--json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["method"], r["route"], r["status"], r["companyId"]) for r in rows] == [
        ("POST", "/api/v1/webhooks", 201, tenant.company_id)]
