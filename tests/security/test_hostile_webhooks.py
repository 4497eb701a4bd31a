"""Hostile bytes on the Meta webhook, through a real ``bisnesgpt run meta``.

A signed inbound message with a NUL or a lone surrogate was acknowledged (200) and then
dropped: PostgreSQL cannot store either. Now it is stored with U+FFFD in their place and the
original kept JSON-escaped beside it. A UTF-16 body and JSON nested 100,000 deep answered 500;
now they are refused with a 4xx and leave no trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.signature import sign
from tests.support.meta import (
    APP_SECRET,
    MetaProc,
    add_meta_phone,
    drop_module_database,
    meta_env,
    module_database,
    module_redis,
)
from tests.support.polling import eventually
from tests.support.procs import free_port

pytestmark = [pytest.mark.security, pytest.mark.timeout(120)]

PHONE_ID = "106540352242922"
SENDER = "16505551234"


@pytest.fixture(scope="module")
async def meta(pg_server_url: str, template_database: str, redis_server_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[MetaProc, Database]]:
    database_url = await module_database(pg_server_url, template_database)
    db = Database(database_url, max_size=2)
    await db.open()
    await add_meta_phone(db, phone_number_id=PHONE_ID)
    workdir: Path = tmp_path_factory.mktemp("meta-hostile")
    with module_redis(redis_server_url) as redis_url:
        proc = MetaProc(workdir, meta_env(database_url, redis_url, free_port(), "http://127.0.0.1:9"))
        try:
            yield proc, db
        finally:
            proc.close()
            await db.close()
            await drop_module_database(pg_server_url, database_url)


def _inbound(wamid: str, body_json: str, name_json: str = '"Eve"') -> bytes:
    """A Meta inbound text webhook; ``body_json``/``name_json`` are JSON string literals as sent."""
    return ('{"object":"whatsapp_business_account","entry":[{"id":"419561257915477","changes":[{"field":"messages",'
            '"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
            f'"phone_number_id":"{PHONE_ID}"}},"contacts":[{{"profile":{{"name":{name_json}}},"wa_id":"{SENDER}"}}],'
            f'"messages":[{{"from":"{SENDER}","id":"{wamid}","timestamp":"{int(time.time())}","type":"text",'
            f'"text":{{"body":{body_json}}}}}]}}}}]}}]}}').encode()


def _post(proc: MetaProc, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(f"{proc.url}/webhook/meta", content=body, timeout=30,
                      headers={"Content-Type": content_type, "X-Hub-Signature-256": sign(APP_SECRET, body)})


@pytest.mark.parametrize(("what", "body_json", "original"), [
    ("NUL", '"hi\\u0000there"', "hi\x00there"),
    ("lone surrogate", '"hi \\ud800 there"', "hi \ud800 there"),
    ("both, and a NUL in the contact name", '"\\u0000\\udfff"', "\x00\udfff"),
])
async def test_signed_inbound_with_unstorable_characters_is_stored_replaced_and_kept_escaped(
        meta: tuple[MetaProc, Database], what: str, body_json: str, original: str) -> None:
    proc, db = meta
    wamid = f"wamid.hostile-{abs(hash(what))}"
    name_json = '"Ev\\u0000e"' if "contact" in what else '"Eve"'
    response = _post(proc, _inbound(wamid, body_json, name_json))
    assert response.status_code == 200, response.text
    row = await eventually(lambda: db.fetchrow("SELECT content, payload FROM messages WHERE external_id = $1", wamid),
                           timeout=20, what=f"the message with a {what} is stored")
    assert row["content"] == original.replace("\x00", "\ufffd").replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    text = row["payload"]["text"]
    assert json.loads(text["escaped_original"]["body"]) == original  # nothing lost
    event = await db.fetchrow("SELECT data FROM tenant_events WHERE data->>'external_id' = $1", wamid)
    assert event is not None and event["data"]["content"] == row["content"]
    if "contact" in what:
        assert event["data"]["contact_name"] == "Ev\ufffde"


@pytest.mark.parametrize(("what", "body", "content_type"), [
    ("UTF-16 body", _inbound("wamid.utf16", '"x"').decode().encode("utf-16"), "application/json"),
    ("UTF-16 body as text/plain", _inbound("wamid.utf16b", '"x"').decode().encode("utf-16"), "text/plain"),
    ("JSON nested 100,000 deep", b'{"object":"x","entry":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "application/json"),
    ("JSON nested 100,000 deep as text/plain", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "text/plain"),
    ("JSON nested 500 deep", b'{"object":"x","entry":' + b"[" * 500 + b"]" * 500 + b"}", "application/json"),
])
async def test_undecodable_or_absurdly_nested_webhooks_are_a_4xx(meta: tuple[MetaProc, Database], what: str,
                                                                 body: bytes, content_type: str) -> None:
    proc, db = meta
    before = await db.fetchval("SELECT count(*) FROM messages")
    response = _post(proc, body, content_type)
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    assert await db.fetchval("SELECT count(*) FROM messages") == before
