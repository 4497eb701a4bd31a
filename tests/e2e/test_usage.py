"""``GET /api/v1/usage`` through a real ``bisnesgpt run api``, and ``bisnesgpt usage`` printing the same.

Messages are moved by ``advance_status`` with the billing blocks Meta's status webhooks
carry, as the webhook processor records them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store
from bisnesgpt.messaging.states import MessageState, ProviderStatus, advance_status
from tests.support.pipeline import ADMIN_KEY, ENCRYPTION_KEY, ApiServer, seed_tenant
from tests.support.procs import clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def pricing(category: str, billable: bool) -> dict[str, Any]:
    return {"billable": billable, "pricing_model": "PMP", "category": category}


async def message(db: Database, company_id: str, phone_index: int, provider: str, steps: list[MessageState], *,
                  at: datetime, billing: tuple[str, str, bool] | None = None) -> None:
    """An outbound message of ``provider`` moved through ``steps`` at Meta's time ``at`` (with
    ``billing`` = (conversation id, category, billable) on its ``sent``)."""
    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id=company_id, phone_index=phone_index, provider=provider,
            connection_type=None, chat_id="60123456789@c.us", message_type="text", payload={"type": "text"},
            queue_name=f"{provider}-messages", process_name=provider))
        assert record is not None
        for step in steps:
            given = ProviderStatus(at=at)
            if step == "sent" and billing is not None:
                conversation_id, category, billable = billing
                given = ProviderStatus(at=at, pricing=pricing(category, billable), conversation={
                    "id": conversation_id, "origin": {"type": category}})
            await advance_status(conn, record.id, step, source="test", external_id=f"wamid.{uuid.uuid4().hex}",
                                 provider_status=given if step in ("sent", "delivered", "read", "failed") else None)


def usage_cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = clean_env(DATABASE_URL=database_url, ENCRYPTION_KEY=ENCRYPTION_KEY,
                            DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "bisnesgpt", "usage", *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_usage_per_phone_category_and_status_for_the_company_only(
        api: ApiServer, module_db: tuple[str, Database], tmp_path: Path) -> None:
    url, db = module_db
    acme = await seed_tenant(db, f"acme-{uuid.uuid4().hex[:8]}", {0: "wwebjs", 1: "meta_direct"})
    other = await seed_tenant(db, f"other-{uuid.uuid4().hex[:8]}", {0: "meta_direct"})
    cid = acme.company_id
    now = datetime.now(UTC).replace(microsecond=0)
    for _ in range(3):  # free-form replies in one service conversation
        await message(db, cid, 1, "meta", ["sending", "sent", "delivered"], at=now - timedelta(hours=2),
                      billing=("conv-service", "service", False))
    await message(db, cid, 1, "meta", ["sending", "sent", "read"], at=now - timedelta(hours=1),
                  billing=("conv-marketing", "marketing", True))
    await message(db, cid, 1, "meta", ["sending", "sent"], at=now - timedelta(days=40),  # sent before the period
                  billing=("conv-old", "marketing", True))
    for _ in range(2):
        await message(db, cid, 0, "wwebjs", ["sending", "sent", "delivered", "read"], at=now - timedelta(hours=1))
    await message(db, cid, 0, "wwebjs", ["sending", "failed"], at=now - timedelta(hours=1))
    await message(db, other.company_id, 0, "meta", ["sending", "sent"], at=now - timedelta(hours=1),
                  billing=("conv-theirs", "utility", True))
    window = {"from": (now - timedelta(days=7)).isoformat(), "to": (now + timedelta(minutes=1)).isoformat()}

    async with httpx.AsyncClient(base_url=api.url, headers=acme.headers) as client:
        answer = await client.get("/api/v1/usage", params=window)
        theirs = await client.get("/api/v1/usage", params={**window, "companyId": other.company_id})
        backwards = await client.get("/api/v1/usage", params={"from": window["to"], "to": window["from"]})
        default_period = await client.get("/api/v1/usage")
        operator = await client.get("/api/v1/usage", params=window, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        unknown = await client.get("/api/v1/usage", params={"companyId": "nosuch"},
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["companyId"], body["from"], body["to"]) == (cid, window["from"], window["to"])
    assert body["billing"] == [
        {"companyId": cid, "phoneIndex": 1, "category": "marketing", "pricingModel": "PMP", "conversations": 1,
         "billableMessages": 1, "messages": 1},
        {"companyId": cid, "phoneIndex": 1, "category": "service", "pricingModel": "PMP", "conversations": 1,
         "billableMessages": 0, "messages": 3},
    ]
    counts = {(s["phoneIndex"], s["provider"], s["status"]): s["messages"] for s in body["statuses"]}
    # Status counts go by when the message was created (the old one too: created just now).
    assert counts == {(0, "wwebjs", "read"): 2, (0, "wwebjs", "failed"): 1, (1, "meta", "delivered"): 3,
                      (1, "meta", "read"): 1, (1, "meta", "sent"): 1}
    assert all(s["direction"] == "outbound" for s in body["statuses"])
    assert theirs.status_code == 404, theirs.text  # another tenant's usage: as if it did not exist
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "from"
    assert default_period.status_code == 200 and default_period.json()["billing"] == body["billing"]
    assert operator.status_code == 200 and operator.json()["companyId"] is None
    assert {b["companyId"] for b in operator.json()["billing"]} >= {cid, other.company_id}
    assert unknown.status_code == 404

    printed = usage_cli(tmp_path, url, cid, "--from", window["from"][:19], "--to", window["to"][:19], "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == body  # the same report as the API's
    table = usage_cli(tmp_path, url, cid, "--from", window["from"][:10])
    assert table.returncode == 0, table.stderr
    assert "marketing" in table.stdout and "service" in table.stdout and "wwebjs" in table.stdout
    assert other.company_id not in table.stdout
    missing = usage_cli(tmp_path, url, "nosuch")
    assert missing.returncode == 1 and "company 'nosuch' not found" in missing.stderr
    assert usage_cli(tmp_path, url).returncode == 2  # COMPANY (or --all) is required
