"""The tenant the benchmarks send as: Meta phones (and WhatsApp-Web phones), windows, an API key.

Pacing is configured so it does not dominate the figures: every Meta phone allows
``PHONE_RATE`` messages/s, the pair rate (one message per 6 s to one recipient) is off
(``pair_interval_ms`` 0), the emulator allows more than that per phone, and the load is
spread round-robin over ``PHONES`` phones and ``CONTACTS`` recipients each.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.meta import ENCRYPTION_KEY, add_meta_phone, open_window

from bisnesgpt.db.pool import Database
from bisnesgpt.tenancy import store as tenancy

COMPANY = "bench"
TOKEN = "bench-access-token"
PHONES = 4
CONTACTS = tuple(f"601230{n:05d}" for n in range(8))
PHONE_RATE = 1000  # messages/s per phone (product pacing; Meta's default tier is 80)
EMULATOR_PHONE_RATE = 5000  # the emulator answers 130429 above this per phone
PROCESS_RATE = 5000  # META_MAX_MESSAGES_PER_SECOND: the meta process's own cap

# Settings of the processes that send through the emulator (meta, and the API that checks windows).
PACING_ENV = {
    "ENCRYPTION_KEY": ENCRYPTION_KEY,
    "META_MAX_MESSAGES_PER_SECOND": str(PROCESS_RATE),
    "META_PHONE_MESSAGES_PER_SECOND": str(PHONE_RATE),
    "META_PAIR_INTERVAL_MS": "0",
    # The key cache (off by default) on, as a deployment tuned for throughput runs it.
    "API_KEY_CACHE_SECONDS": "2",
}
EMULATOR_ARGS = ["--messages-per-second", str(EMULATOR_PHONE_RATE), "--pair-interval-ms", "0"]


def phone_number_id(index: int) -> str:
    return f"{710000000000000 + index}"


def emulator_phones() -> list[str]:
    return [f"{phone_number_id(i)}:{TOKEN}" for i in range(PHONES)]


async def _seed(database_url: str, extra_phones: dict[int, dict[str, Any]], contacts: tuple[str, ...]) -> str:
    db = Database(database_url, max_size=2)
    await db.open()
    try:
        phones = {i: {"messages_per_second": PHONE_RATE, "pair_interval_ms": 0} for i in range(PHONES)}
        phones.update(extra_phones)
        for index, settings in phones.items():
            await add_meta_phone(db, company_id=COMPANY, phone_index=index, phone_number_id=phone_number_id(index),
                                 token=TOKEN, settings=settings)
            await open_window(db, list(contacts), company_id=COMPANY, phone_index=index)
        async with db.transaction() as conn:
            _record, key = await tenancy.create_api_key(conn, company_id=COMPANY, name="bench")
        return key
    finally:
        await db.close()


def seed_meta_tenant(database_url: str, extra_phones: dict[int, dict[str, Any]] | None = None,
                     contacts: tuple[str, ...] = CONTACTS) -> str:
    """Seed the company, its Meta phones and open windows with ``contacts``; returns a plaintext API key."""
    return asyncio.run(_seed(database_url, extra_phones or {}, contacts))


def text_shapes(api_url: str, api_key: str, *, body: str = "bench") -> list[dict[str, Any]]:
    """One POST per (phone, recipient), for the load generator's round-robin."""
    headers = {"Authorization": f"Bearer {api_key}"}
    return [{"method": "POST", "url": f"{api_url}/api/v2/messages/text/{COMPANY}/{contact}",
             "body": json.dumps({"message": body, "phoneIndex": phone}), "headers": headers}
            for contact in CONTACTS for phone in range(PHONES)]
