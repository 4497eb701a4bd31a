"""Claims are proven: a phone is stored only once the provider confirmed the credentials own it.

Before, any token was accepted and the first claimant held the number: a tenant could connect
another business's phone_number_id with a made-up token (and hold it against its owner). Now
connecting a Meta phone reads the number at the Graph API with the token, and finds it among
the given WABA's numbers; onboarding a 360dialog phone asks 360dialog which number the key
names. The emulator plays both providers here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from bisnesgpt.db.pool import Database
from tests.support.meta import EmulatorProc
from tests.support.pipeline import ApiServer, seed_tenant
from tests.support.procs import clean_env

pytestmark = pytest.mark.security

NOT_PROVEN = "https://bisnesgpt.dev/problems/provider-claim-not-proven"
CONNECT, ONBOARD = "/api/whatsapp/meta-direct/connect", "/api/whatsapp/360dialog/onboard"


def _number() -> str:
    return str(10**14 + uuid.uuid4().int % 10**14)


def _cid() -> str:
    return f"co-{uuid.uuid4().hex[:10]}"


async def _phones(db: Database, company_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM phone_configs WHERE company_id = $1", company_id))


async def test_a_meta_phone_is_stored_only_with_a_token_that_reads_it_in_its_waba(
        api: ApiServer, module_db: tuple[str, Database], emulator: EmulatorProc) -> None:
    db = module_db[1]
    owner, thief = await seed_tenant(db, _cid()), await seed_tenant(db, _cid())
    pn_id, waba, token = _number(), _number(), f"EAAG-owner-{uuid.uuid4().hex}"
    emulator.add_phone(pn_id, access_token=token, waba_id=waba, display_phone_number="15551234567")
    unknown = _number()

    def body(company_id: str, **values: str) -> dict[str, object]:
        return {"companyId": company_id, "phoneIndex": 0, "phoneNumberId": pn_id, "wabaId": waba,
                "accessToken": token, **values}

    async with httpx.AsyncClient(base_url=api.url) as client:
        wrong_token = await client.post(CONNECT, headers=thief.headers,
                                        json=body(thief.company_id, accessToken="EAAG-made-up-token"))
        no_such_number = await client.post(CONNECT, headers=thief.headers,
                                           json=body(thief.company_id, phoneNumberId=unknown))
        wrong_waba = await client.post(CONNECT, headers=owner.headers, json=body(owner.company_id, wabaId=_number()))
        proven = await client.post(CONNECT, headers=owner.headers, json=body(owner.company_id))
    for refused, field in ((wrong_token, "phoneNumberId"), (no_such_number, "phoneNumberId"),
                           (wrong_waba, "wabaId")):
        assert refused.status_code == 422, refused.text
        assert refused.json()["type"] == NOT_PROVEN
        assert refused.json()["errors"][0]["field"] == field
        assert "not stored" in refused.json()["detail"] or "WhatsApp Business Account" in refused.json()["detail"]
    assert "190" in wrong_token.json()["detail"]
    assert await _phones(db, thief.company_id) == 0
    assert proven.status_code == 200, proven.text
    assert proven.json()["displayPhoneNumber"] == "15551234567"  # what Meta says, when the client gave none
    assert await db.fetchval("SELECT meta_phone_number_id FROM phone_configs WHERE company_id = $1",
                             owner.company_id) == pn_id
    asked = {r["operation"] for r in emulator.requests() if r.get("phone_number_id") in (pn_id, None)}
    assert {"phone_number", "waba_phone_numbers"} <= asked


async def test_a_360dialog_phone_is_stored_only_with_a_key_360dialog_accepts(
        api: ApiServer, module_db: tuple[str, Database], emulator: EmulatorProc) -> None:
    db = module_db[1]
    owner, thief = await seed_tenant(db, _cid()), await seed_tenant(db, _cid())
    pn_id, key = _number(), f"d360-{uuid.uuid4().hex}"
    emulator.add_phone(pn_id, d360_api_key=key, waba_id="700000000000001")

    def body(company_id: str, channel: str, **values: str) -> dict[str, object]:
        return {"companyId": company_id, "phoneIndex": 0, "clientId": "cl", "channelId": channel, **values}

    async with httpx.AsyncClient(base_url=api.url) as client:
        no_key = await client.post(ONBOARD, headers=thief.headers, json=body(thief.company_id, "ch-t1"))
        wrong_key = await client.post(ONBOARD, headers=thief.headers,
                                      json=body(thief.company_id, "ch-t2", apiKey="d360-made-up-key"))
        proven = await client.post(ONBOARD, headers=owner.headers,
                                   json=body(owner.company_id, f"ch-{uuid.uuid4().hex[:8]}", apiKey=key))
        # The number behind the key is the owner's now: another channel id does not make it another number.
        same_number = await client.post(ONBOARD, headers=thief.headers,
                                        json=body(thief.company_id, f"ch-{uuid.uuid4().hex[:8]}", apiKey=key))
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["field"] == "apiKey", no_key.text
    assert wrong_key.status_code == 422 and wrong_key.json()["type"] == NOT_PROVEN, wrong_key.text
    assert proven.status_code == 200, proven.text
    stored = await db.fetchrow("SELECT meta_phone_number_id, meta_waba_id FROM phone_configs WHERE company_id = $1",
                               owner.company_id)
    assert tuple(stored) == (pn_id, "700000000000001")
    assert same_number.status_code == 409, same_number.text
    assert same_number.json()["identity"] == "meta_phone_number_id"
    assert await _phones(db, thief.company_id) == 0


async def test_the_cli_proves_a_claim_too(tmp_path: Path, module_db: tuple[str, Database], module_redis: str,
                                          emulator: EmulatorProc) -> None:
    url, db = module_db
    tenant = await seed_tenant(db, _cid())
    pn_id, waba, token = _number(), _number(), f"EAAG-owner-{uuid.uuid4().hex}"
    emulator.add_phone(pn_id, access_token=token, waba_id=waba)
    env = clean_env(DATABASE_URL=url, REDIS_URL=module_redis, DATA_DIR=str(tmp_path), ENCRYPTION_KEY="5f" * 32,
                    META_GRAPH_URL=emulator.url, PATH=os.environ.get("PATH", ""))

    async def add(index: int, secret: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bisnesgpt", "phones", "add", tenant.company_id, "--index", str(index), "--type",
            "meta_direct", "--phone-number-id", pn_id, "--waba-id", waba, "--access-token", secret, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return int(proc.returncode or 0), out.decode(errors="replace")

    refused = await add(0, "EAAG-made-up-token")
    assert refused[0] != 0 and "cannot read phone number id" in refused[1], refused
    assert await _phones(db, tenant.company_id) == 0
    proven = await add(1, token)
    assert proven[0] == 0, proven
    assert await db.fetchval("SELECT meta_phone_number_id FROM phone_configs WHERE company_id = $1",
                             tenant.company_id) == pn_id
