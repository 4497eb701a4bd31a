"""Scoped API keys: a company key limited to some scopes, some phones, until an expiry.

Before, every company key could do everything for every phone of its company, forever: a
key handed to a CRM that only sends could also read every conversation, pair or log out
WhatsApp sessions and point webhooks elsewhere.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bisnesgpt.api.scopes import ROUTE_RULES
from bisnesgpt.db.pool import Database
from bisnesgpt.tenancy import store as tenancy
from bisnesgpt.tenancy.store import KeyLimits, Scope
from tests.support.pipeline import ENCRYPTION_KEY, ApiServer, seed_tenant
from tests.support.procs import clean_env

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]

PERSON = "60123456789"
TYPE = "https://bisnesgpt.dev/problems/"
# Routes no company key may call at all (operators only): outside the scope table.
OPERATOR_ONLY = {("GET", "/api/admin/sessions"), ("GET", "/api/admin/sessions/events"),
                 ("GET", "/api/whatsapp/meta-accounts")}
# Not in the table on purpose: only a key without limits (or an operator) reads the audit log.
UNLIMITED_ONLY = {("GET", "/api/v1/audit")}


@pytest.fixture
def db(module_db: tuple[str, Database]) -> Database:
    return module_db[1]


async def key(db: Database, company_id: str, scopes: tuple[Scope, ...] | None = None,
              phones: tuple[int, ...] | None = None) -> dict[str, str]:
    async with db.connection() as conn:
        _record, plaintext = await tenancy.create_api_key(conn, company_id=company_id, name="scoped",
                                                          limits=KeyLimits(scopes, phones))
    return {"Authorization": f"Bearer {plaintext}"}


def problem_of(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == TYPE + type_, body
    return body


def text(phone_index: int = 0) -> dict[str, object]:
    return {"to": PERSON, "type": "text", "text": {"body": "hello"}, "phoneIndex": phone_index}


async def test_a_key_without_a_scope_gets_a_403_naming_it_and_nothing_happens(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, f"sc-{uuid.uuid4().hex[:8]}", {0: "wwebjs", 1: "wwebjs"})
    cid = tenant.company_id
    reader = await key(db, cid, ("messages:read",))
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        refused = await client.post("/api/v1/messages", json=text(), headers=reader)
        body = problem_of(refused, 403, "missing-scope")
        assert body["missing_scope"] == "messages:send" and "'messages:send'" in body["detail"]
        assert "messages:read" in body["detail"]  # what the key has
        assert await db.fetchval("SELECT count(*) FROM messages WHERE company_id = $1", cid) == 0
        for method, path, needed in (
            ("POST", "/api/v1/webhooks", "webhooks:manage"),
            ("GET", "/api/v1/webhooks", "webhooks:manage"),
            ("GET", f"/api/sessions/{cid}/0", "sessions:manage"),
            ("POST", f"/api/sessions/{cid}/0/restart", "sessions:manage"),
            ("GET", f"/api/whatsapp/config/{cid}", "sessions:manage"),
        ):
            answer = await client.request(method, path, headers=reader, json={"url": "https://example.com/h"})
            assert problem_of(answer, 403, "missing-scope")["missing_scope"] == needed, (method, path)
        assert (await client.get(f"/api/v1/messages?companyId={cid}", headers=reader)).status_code == 200
        assert (await client.get("/api/v1/chats", headers=reader)).status_code == 200
        # The dashboard (its JSON API with a key, like its sign-in) takes only unlimited keys.
        assert (await client.get("/dashboard/api/me", headers=reader)).status_code == 403
        assert (await client.get("/dashboard/api/me", headers=tenant.headers)).status_code == 200
        # Keys made before scopes existed (and keys made without --scope) keep every scope.
        assert (await client.post("/api/v1/messages", json=text(), headers=tenant.headers)).status_code == 202
        assert (await client.get("/api/v1/webhooks", headers=tenant.headers)).status_code == 200
        assert (await client.get(f"/api/sessions/{cid}/0", headers=tenant.headers)).status_code == 200


async def test_a_phone_limited_key_acts_only_on_its_phones(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, f"ph-{uuid.uuid4().hex[:8]}", {0: "wwebjs", 1: "wwebjs"})
    cid = tenant.company_id
    sender = await key(db, cid, ("messages:send", "messages:read", "sessions:manage"), phones=(1,))
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        other_phone = await client.post("/api/v1/messages", json=text(0), headers=sender)
        assert problem_of(other_phone, 403, "phone-not-allowed")["allowed_phones"] == [1]
        default_phone = await client.post(f"/api/v2/messages/text/{cid}/{PERSON}@c.us", json={"message": "x"},
                                          headers=sender)
        problem_of(default_phone, 403, "phone-not-allowed")  # phoneIndex defaults to 0
        own = await client.post("/api/v1/messages", json=text(1), headers=sender)
        assert own.status_code == 202, own.text
        theirs = await client.post("/api/v1/messages", json=text(0), headers=tenant.headers)
        assert theirs.status_code == 202
        # Reading: a message of another phone, a listing across phones, another phone's chats.
        problem_of(await client.get(f"/api/v1/messages/{theirs.json()['messageId']}", headers=sender), 403,
                   "phone-not-allowed")
        assert (await client.get(f"/api/v1/messages/{own.json()['messageId']}", headers=sender)).status_code == 200
        problem_of(await client.get("/api/v1/messages", headers=sender), 403, "phone-not-allowed")
        mine = await client.get("/api/v1/messages?phoneIndex=1", headers=sender)
        assert mine.status_code == 200 and [m["messageId"] for m in mine.json()["data"]] == [own.json()["messageId"]]
        problem_of(await client.get("/api/v1/chats", headers=sender), 403, "phone-not-allowed")
        assert (await client.get("/api/v1/chats?phoneIndex=1", headers=sender)).status_code == 200
        # Sessions: its phone only, not the company-wide list.
        problem_of(await client.get(f"/api/sessions/{cid}/0", headers=sender), 403, "phone-not-allowed")
        assert (await client.get(f"/api/sessions/{cid}/1", headers=sender)).status_code == 200
        problem_of(await client.get(f"/api/sessions/{cid}", headers=sender), 403, "phone-not-allowed")
        # Another company stays a 404, whatever the key's limits.
        assert (await client.get("/api/sessions/someone-else/1", headers=sender)).status_code == 404


async def test_the_live_event_stream_needs_messages_read_and_the_keys_phone(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, f"ws-{uuid.uuid4().hex[:8]}", {0: "wwebjs", 1: "wwebjs"})
    sender = await key(db, tenant.company_id, ("messages:send",))
    phone_one = await key(db, tenant.company_id, ("messages:read",), phones=(1,))
    ws = api.url.replace("http", "ws") + "/api/v1/events/ws"
    for headers, query, expected in ((sender, "", 4403), (phone_one, "", 4403), (phone_one, "?phoneIndex=0", 4403)):
        async with connect(ws + query, additional_headers=headers) as conn:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(conn.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == expected, (query, closed.value)
    async with connect(ws + "?phoneIndex=1", additional_headers=phone_one) as conn:
        with pytest.raises(TimeoutError):  # open, waiting for events of phone 1
            await asyncio.wait_for(conn.recv(), 1)


async def test_an_expired_key_is_refused_and_says_so(api: ApiServer, db: Database) -> None:
    tenant = await seed_tenant(db, f"ex-{uuid.uuid4().hex[:8]}", {0: "wwebjs"})
    async with db.connection() as conn:
        record, plaintext = await tenancy.create_api_key(conn, company_id=tenant.company_id, limits=KeyLimits(
            expires_at=datetime.now(UTC) + timedelta(hours=1)))
    headers = {"Authorization": f"Bearer {plaintext}"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        assert (await client.get("/api/v1/chats", headers=headers)).status_code == 200
        await db.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", record.id)
        expired = problem_of(await client.get("/api/v1/chats", headers=headers), 401, "unauthorized")
        assert "expired" in expired["detail"]
    with pytest.raises(Exception, match="must be in the future"):
        async with db.connection() as conn:
            await tenancy.create_api_key(conn, company_id=tenant.company_id, limits=KeyLimits(
                expires_at=datetime.now(UTC) - timedelta(days=1)))


def test_every_route_a_company_key_can_call_has_a_scope(api: ApiServer) -> None:
    spec = httpx.get(api.url + "/openapi.json").json()
    authenticated = {(method.upper(), path) for path, operations in spec["paths"].items()
                     for method, operation in operations.items() if operation.get("security")}
    assert set(ROUTE_RULES) <= authenticated, sorted(set(ROUTE_RULES) - authenticated)  # no stale entries
    assert authenticated - set(ROUTE_RULES) == OPERATOR_ONLY | UNLIMITED_ONLY


def test_operators_create_scoped_keys_from_the_command_line(tmp_path: Path, api: ApiServer,
                                                            module_db: tuple[str, Database]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = clean_env(DATABASE_URL=module_db[0], ENCRYPTION_KEY=ENCRYPTION_KEY, DATA_DIR=str(tmp_path / "data"),
                        COLUMNS="250")
        return subprocess.run([sys.executable, "-m", "bisnesgpt", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    cid = f"cli-{uuid.uuid4().hex[:8]}"
    assert cli("companies", "add", cid).returncode == 0
    created = cli("keys", "create", cid, "--scope", "messages:send", "--scope", "messages:read", "--phone", "0",
                  "--expires", "30d")
    assert created.returncode == 0, created.stderr
    assert "messages:send, messages:read; phones 0; expires" in created.stderr
    plaintext = created.stdout.strip().splitlines()[-1]
    listed = cli("keys", "list", cid)
    assert "messages:send messages:read" in listed.stdout, listed.stdout
    answer = httpx.get(api.url + "/api/v1/webhooks", headers={"Authorization": f"Bearer {plaintext}"})
    assert answer.status_code == 403 and answer.json()["missing_scope"] == "webhooks:manage"
    # The key's limits replaced: webhooks:manage now, every phone, no expiry; the same key.
    key_id = created.stderr.split()[1]  # "key <id> for company …"
    changed = cli("keys", "set", key_id, "--scope", "webhooks:manage")
    assert changed.returncode == 0 and "webhooks:manage; every phone; no expiry" in changed.stdout, changed
    answer = httpx.get(api.url + "/api/v1/webhooks", headers={"Authorization": f"Bearer {plaintext}"})
    assert answer.status_code == 200, answer.text
    refused = cli("keys", "set", key_id, "--expires", "2001-01-01T00:00:00Z")
    assert refused.returncode != 0 and "must be in the future" in refused.stderr + refused.stdout, refused
    unknown = cli("keys", "create", cid, "--scope", "messages:write")
    assert unknown.returncode == 2 and "unknown scope messages:write" in unknown.stderr
    assert cli("keys", "create", "--admin", "--scope", "messages:read").returncode == 2
