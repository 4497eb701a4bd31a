"""The neonize driver up to the boundary this machine allows (WhatsApp is not reachable here).

A real ``bisnesgpt run wwebjs`` with WWEBJS_DRIVER=neonize: whatsmeow's store tables are
created in their own schema of the product database, a phone's connect attempt that cannot
reach WhatsApp becomes status ``error`` with a readable reason and a scheduled retry, the
retries keep coming with backoff, and the process stays healthy throughout. (On a machine
that can reach WhatsApp the same test sees a real QR code instead, and checks that.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bisnesgpt.engines.wwebjs.qr import png_from_data_url
from tests.support.wwebjs import Db, png_size, seed_phone, start_wwebjs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WHATSMEOW_TABLES = {"whatsmeow_device", "whatsmeow_sessions", "whatsmeow_pre_keys", "whatsmeow_identity_keys",
                    "whatsmeow_version"}


async def test_neonize_connect_failure_is_an_error_status_with_retries_not_a_crash(
        tmp_path: Path, database_url: str, redis_url: str) -> None:
    await seed_phone(database_url, "neo", 0)
    db = Db(database_url)
    wwebjs = start_wwebjs(tmp_path, database_url, redis_url, None, name="wwebjs-neonize", driver="neonize",
                          WWEBJS_STORE_SCHEMA="wa_store")
    try:
        async def settled() -> dict | None:
            row = await db.phone_status("neo", 0)
            return row if row and row["status"] in ("error", "qr") else None

        from tests.support.polling import eventually

        first = await eventually(settled, timeout=60, what="neonize session outcome")
        tables = {r["table_name"] for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'wa_store'")}
        assert WHATSMEOW_TABLES <= tables, tables
        assert not {r["table_name"] for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name LIKE 'whatsmeow%'")}

        if first["status"] == "qr":  # this machine reaches WhatsApp: a real QR code
            assert png_size(png_from_data_url(first["metadata"]["qrCode"]))[0] > 100
            return
        metadata = first["metadata"]
        assert "whatsapp" in metadata["reason"].lower(), metadata
        assert metadata["retryInMs"] > 0 and metadata["retryAt"] and metadata["driver"] == "neonize"
        # More attempts follow, further apart, and the process stays up and healthy.
        later = await db.wait_status("neo", 0, "error", timeout=60,
                                     where=lambda row: row["metadata"].get("attempt", 0) >= 3)
        assert later["metadata"]["retryInMs"] > metadata["retryInMs"]
        assert wwebjs.proc.popen.poll() is None
        health = wwebjs.health()
        assert health["status"] == "healthy", health
        assert health["checks"]["wwebjs_sessions"]["owned"] == 1
        leftover = await db.fetch("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND application_name LIKE 'bisnesgpt-wa-%'")
        assert len(leftover) <= 1, leftover  # retries do not pile up PostgreSQL connections
        statuses = [e["status"] for e in await db.session_events("neo")]
        assert statuses[:2] == ["initializing", "error"] and "ready" not in statuses
    finally:
        wwebjs.proc.kill_tree()
