"""A provider identity (a 360dialog channel id, a Meta phone_number_id) belongs to one phone.

Before: onboarding a second company with another company's 360dialog channel id answered 200,
and that channel's inbound webhooks were stored under the second company, which read them
through its own API. Now every route that sets an identity answers 409
``provider-identity-taken`` (never a 500), and the migration that makes the channel id unique
resolves existing duplicates: the oldest phone keeps its claim.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from bisnesgpt.db.migrate import discover
from bisnesgpt.db.pool import Database
from tests.conftest import create_database, drop_database
from tests.support.meta import EmulatorProc
from tests.support.pipeline import ApiServer, seed_tenant
from tests.support.procs import clean_env
from tests.support.servers import unique_name

pytestmark = pytest.mark.security

TAKEN = "https://bisnesgpt.dev/problems/provider-identity-taken"


def _cid() -> str:
    return f"co-{uuid.uuid4().hex[:10]}"


def _number() -> str:
    return str(10**14 + uuid.uuid4().int % 10**14)


def _d360_number(emulator: EmulatorProc) -> str:
    """A 360dialog API key of a number of its own at the emulator."""
    key = f"d360-{uuid.uuid4().hex}"
    emulator.add_phone(_number(), d360_api_key=key)
    return key


async def test_a_360dialog_channel_of_another_company_is_refused_with_409(
        api: ApiServer, module_db: tuple[str, Database], emulator: EmulatorProc) -> None:
    db = module_db[1]
    first, second = await seed_tenant(db, _cid()), await seed_tenant(db, _cid())
    channel = f"ch-{uuid.uuid4().hex[:8]}"
    body = {"phoneIndex": 0, "clientId": "cl-1", "channelId": channel}
    owner_key = _d360_number(emulator)
    async with httpx.AsyncClient(base_url=api.url) as client:
        owned = await client.post("/api/whatsapp/360dialog/onboard", headers=first.headers,
                                  json={**body, "companyId": first.company_id, "apiKey": owner_key})
        stolen = await client.post("/api/whatsapp/360dialog/onboard", headers=second.headers,
                                   json={**body, "companyId": second.company_id, "apiKey": _d360_number(emulator)})
        # Another phone of the same company may not hold it either: one identity, one phone.
        twice = await client.post("/api/whatsapp/360dialog/onboard", headers=first.headers,
                                  json={**body, "companyId": first.company_id, "phoneIndex": 1,
                                        "apiKey": _d360_number(emulator)})
        again = await client.post("/api/whatsapp/360dialog/onboard", headers=first.headers,
                                  json={**body, "companyId": first.company_id, "apiKey": owner_key})
    assert owned.status_code == 200, owned.text
    for refused in (stolen, twice):
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["type"] == TAKEN
        assert problem["identity"] == "dialog360_channel_id" and problem["value"] == channel
        assert "360dialog channel id" in problem["detail"] and "operator" in problem["detail"]
        assert problem["errors"][0]["field"] == "channelId"
        assert first.company_id not in refused.text  # whose it is stays the other tenant's business
    assert again.status_code == 200, again.text  # the phone that holds it may save it again
    owners = await db.fetch("SELECT company_id, phone_index FROM phone_configs WHERE dialog360_channel_id = $1",
                            channel)
    assert [(r["company_id"], r["phone_index"]) for r in owners] == [(first.company_id, 0)]


async def test_a_meta_phone_number_id_of_another_company_is_refused_with_409(
        api: ApiServer, module_db: tuple[str, Database], emulator: EmulatorProc) -> None:
    db = module_db[1]
    first, second = await seed_tenant(db, _cid()), await seed_tenant(db, _cid())
    pn_id = _number()
    # Even a token that reads the number (here any token does) cannot take it from the phone that has it.
    emulator.add_phone(pn_id, waba_id="1")
    await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type, meta_phone_number_id) "
                     "VALUES ($1, 0, 'meta_direct', $2)", first.company_id, pn_id)
    async with httpx.AsyncClient(base_url=api.url, headers=second.headers) as client:
        stolen = await client.post("/api/whatsapp/meta-direct/connect", json={
            "companyId": second.company_id, "phoneIndex": 0, "phoneNumberId": pn_id, "wabaId": "1",
            "accessToken": "a-token-of-the-thief"})
    assert stolen.status_code == 409, stolen.text
    assert stolen.json()["type"] == TAKEN and stolen.json()["identity"] == "meta_phone_number_id"
    assert stolen.json()["errors"][0]["field"] == "phoneNumberId"
    assert await db.fetchval("SELECT count(*) FROM phone_configs WHERE company_id = $1", second.company_id) == 0


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bisnesgpt", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(errors="replace")


async def test_the_cli_refuses_a_taken_identity_on_add_and_set(
        tmp_path: Path, module_db: tuple[str, Database], module_redis: str) -> None:
    url, db = module_db
    first, second = await seed_tenant(db, _cid()), await seed_tenant(db, _cid())
    channel = f"ch-{uuid.uuid4().hex[:8]}"
    await db.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type, dialog360_channel_id) "
                     "VALUES ($1, 0, '360dialog', $2), ($3, 1, 'wwebjs', NULL)", first.company_id, channel,
                     second.company_id)
    env = clean_env(DATABASE_URL=url, REDIS_URL=module_redis, DATA_DIR=str(tmp_path), ENCRYPTION_KEY="5f" * 32,
                    PATH=os.environ.get("PATH", ""))
    # --no-verify: an operator's own say-so skips the provider's proof, never the one-phone rule.
    added = await _cli(env, "phones", "add", second.company_id, "--index", "0", "--type", "360dialog",
                       "--client-id", "c", "--channel-id", channel, "--no-verify")
    changed = await _cli(env, "phones", "set", second.company_id, "1", "--type", "360dialog", "--client-id", "c",
                         "--channel-id", channel, "--no-verify")
    for code, output in (added, changed):
        assert code != 0, output
        assert "360dialog channel id" in output and "already connected to another phone" in output, output
        assert "Traceback" not in output
    assert await db.fetchval("SELECT count(*) FROM phone_configs WHERE dialog360_channel_id = $1", channel) == 1


async def test_the_migration_keeps_the_oldest_claim_and_says_which_phones_lost_theirs(pg_server_url: str) -> None:
    name = unique_name("bgpt_identity")
    url = await create_database(pg_server_url, name)
    try:
        conn = await asyncpg.connect(url)
        try:
            migrations = discover()
            for migration in (m for m in migrations if m.version < 12):
                await conn.execute(migration.sql)
            await conn.execute("INSERT INTO companies (id, name) VALUES ('victim', 'V'), ('thief', 'T'), ('x', 'X')")
            await conn.execute(
                "INSERT INTO phone_configs (company_id, phone_index, connection_type, dialog360_channel_id, created_at)"
                " VALUES ('thief', 0, '360dialog', 'chan-a', now()),"
                "        ('victim', 0, '360dialog', 'chan-a', now() - interval '1 day'),"
                "        ('x', 0, '360dialog', 'chan-a', now()),"
                "        ('x', 1, '360dialog', 'chan-b', now())")
            await conn.execute(next(m for m in migrations if m.version == 12).sql)
            rows = await conn.fetch("SELECT company_id, phone_index, dialog360_channel_id FROM phone_configs "
                                    "ORDER BY company_id, phone_index")
            events = await conn.fetch("SELECT event_data, severity FROM process_events "
                                      "WHERE event_type = 'phone.provider_identity.cleared' ORDER BY id")
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute("UPDATE phone_configs SET dialog360_channel_id = 'chan-a' "
                                   "WHERE company_id = 'x' AND phone_index = 1")
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server_url, name)
    assert [tuple(r) for r in rows] == [("thief", 0, None), ("victim", 0, "chan-a"), ("x", 0, None),
                                        ("x", 1, "chan-b")]
    lost = sorted((json.loads(e["event_data"])["companyId"], json.loads(e["event_data"])["keptBy"]["companyId"])
                  for e in events)
    assert lost == [("thief", "victim"), ("x", "victim")]
    assert {e["severity"] for e in events} == {"warning"}
