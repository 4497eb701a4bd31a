"""Test helpers for the meta engine: phones, messages, the emulator and the meta process.

Messages are created the way the API creates them, without an API process:
``insert_outbound`` (status ``queued``, payload per the payload contract) and a
``meta-messages`` job ``{messageId, companyId, phoneIndex}``, so the engine is tested alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.ids import new_message_id
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store
from bisnesgpt.messaging.queues import META, QueueProducer
from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN
from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, http_ok

ENCRYPTION_KEY = "5f" * 32
APP_SECRET = "emulator-app-secret"
VERIFY_TOKEN = "verify-me"
D360_TOKEN = "d360-webhook-token"


def box() -> SecretBox:
    return SecretBox.from_hex(ENCRYPTION_KEY)


async def add_company(db: Database, company_id: str = "acme") -> None:
    await db.execute("INSERT INTO companies (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", company_id)


async def add_meta_phone(db: Database, *, company_id: str = "acme", phone_index: int = 0,
                         phone_number_id: str = "106540352242922", token: str = "test-token",
                         waba_id: str = "419561257915477", display: str = "15550783881",
                         settings: dict[str, Any] | None = None) -> None:
    await add_company(db, company_id)
    await db.execute(
        """INSERT INTO phone_configs (company_id, phone_index, connection_type, meta_phone_number_id, meta_waba_id,
                                      meta_access_token_encrypted, display_phone_number, status, settings)
           VALUES ($1, $2, 'meta_direct', $3, $4, $5, $6, 'active', $7::jsonb)""",
        company_id, phone_index, phone_number_id, waba_id,
        box().encrypt(token, META_ACCESS_TOKEN.at(company_id, phone_index)), display, settings or {},
    )


async def add_d360_phone(db: Database, *, company_id: str = "acme", phone_index: int = 0, api_key: str = "d360-key",
                         channel_id: str = "chan-1", display: str = "15550783881",
                         settings: dict[str, Any] | None = None) -> None:
    await add_company(db, company_id)
    await db.execute(
        """INSERT INTO phone_configs (company_id, phone_index, connection_type, dialog360_channel_id, api_key_encrypted,
                                      display_phone_number, status, settings)
           VALUES ($1, $2, '360dialog', $3, $4, $5, 'active', $6::jsonb)""",
        company_id, phone_index, channel_id, box().encrypt(api_key, D360_API_KEY.at(company_id, phone_index)), display,
        settings or {},
    )


async def open_window(db: Database, contacts: list[str], *, company_id: str = "acme", phone_index: int = 0) -> None:
    """Record an inbound message from each contact just now (the 24-hour window is open)."""
    async with db.transaction() as conn:
        for contact in contacts:
            await store.touch_inbound_session(conn, company_id, phone_index, contact, datetime.now(UTC))


def text_payload(to: str, body: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": body, "preview_url": False}}


async def insert_message(db: Database, payload: dict[str, Any], *, company_id: str = "acme", phone_index: int = 0,
                         message_id: str | None = None) -> str:
    message_id = message_id or new_message_id()
    kind = str(payload.get("type") or "text")
    to = str(payload["to"])
    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=message_id, company_id=company_id, phone_index=phone_index, provider="meta",
            connection_type="meta_direct", chat_id=f"{to}@c.us", message_type=kind, payload=payload,
            queue_name=META.name, process_name="meta",
            content=(payload.get("text") or {}).get("body") if kind == "text" else None,
        ))
    assert record is not None
    return message_id


async def queue_message(db: Database, producer: QueueProducer, payload: dict[str, Any], *, company_id: str = "acme",
                        phone_index: int = 0, message_id: str | None = None) -> str:
    """Insert and enqueue one message, as the API does."""
    message_id = await insert_message(db, payload, company_id=company_id, phone_index=phone_index,
                                      message_id=message_id)
    await producer.add(META, message_id, {"messageId": message_id, "companyId": company_id,
                                          "phoneIndex": phone_index})
    return message_id


async def statuses(db: Database, message_ids: list[str]) -> dict[str, str]:
    rows = await db.fetch("SELECT message_id, status FROM messages WHERE message_id = ANY($1::text[])", message_ids)
    return {r["message_id"]: r["status"] for r in rows}


async def wait_statuses(db: Database, message_ids: list[str], wanted: set[str], timeout: float = 60,
                        what: str = "") -> dict[str, str]:
    """Wait until every message is in one of ``wanted``; returns the final map."""
    deadline = time.monotonic() + timeout
    while True:
        current = await statuses(db, message_ids)
        if len(current) == len(message_ids) and all(s in wanted for s in current.values()):
            return current
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for value in current.values():
                counts[value] = counts.get(value, 0) + 1
            failures = await db.fetch("SELECT message_id, error_code, error_title FROM messages WHERE "
                                      "message_id = ANY($1::text[]) AND status = 'failed' LIMIT 3", message_ids)
            raise AssertionError(f"timed out waiting for {what or wanted}: {counts}; failures: "
                                 f"{[tuple(f) for f in failures]}")
        await asyncio.sleep(0.2)


async def history(db: Database, message_id: str, *, applied_only: bool = True) -> list[str]:
    """The message's state changes (with ``applied_only`` False: also the provider statuses that did not move it)."""
    rows = await db.fetch(
        """SELECT h.to_status FROM message_status_history h JOIN messages m ON m.id = h.message_pk
           WHERE m.message_id = $1 AND (h.applied OR NOT $2) ORDER BY h.id""", message_id, applied_only)
    return [r["to_status"] for r in rows]


# --- the emulator, spawned as `bisnesgpt sandbox meta` ------------------------------------------


class EmulatorProc:
    """A running emulator and its admin API."""

    def __init__(self, workdir: Path, *, webhook_url: str | None = None, app_secret: str | None = APP_SECRET,
                 profile: str = "meta", phones: list[str] | None = None, extra: list[str] | None = None,
                 webhook_token: str | None = None, name: str = "emulator") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["sandbox", "meta", "--port", str(self.port), "--profile", profile]
        if webhook_url:
            args += ["--webhook-url", webhook_url]
        if app_secret:
            args += ["--app-secret", app_secret]
        if webhook_token:
            args += ["--webhook-token", webhook_token]
        for phone in phones or []:
            args += ["--phone", phone]
        args += extra or []
        self.proc = Proc(args, cwd=workdir, env=clean_env(), log_name=name)
        wait_until(lambda: http_ok(f"{self.url}/_emulator/health"), timeout=30, what="emulator up")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/_emulator{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def add_phone(self, phone_number_id: str, **values: Any) -> Any:
        return self.admin("POST", "/phones", json={"phone_number_id": phone_number_id, **values})

    def configure_webhooks(self, **values: Any) -> Any:
        return self.admin("PATCH", "/config", json={"webhook": values})

    def requests(self, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.admin("GET", "/requests", params=params)
        return out

    def webhooks(self, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.admin("GET", "/webhooks", params=params)
        return out

    def close(self) -> None:
        self.http.close()
        self.proc.kill_tree()


# --- the meta process, spawned as `bisnesgpt run meta` --------------------------------------------


def meta_env(database_url: str, redis_url: str, port: int, graph_url: str, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "META_PORT": str(port), "HOST": "127.0.0.1",
        "ENCRYPTION_KEY": ENCRYPTION_KEY, "META_APP_SECRET": APP_SECRET, "META_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "D360_WEBHOOK_TOKEN": D360_TOKEN, "META_GRAPH_URL": graph_url, "D360_BASE_URL": graph_url,
        "HEARTBEAT_INTERVAL": "2000", "META_MAX_MESSAGES_PER_SECOND": "1000", "LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return clean_env(**env)


class MetaProc:
    """A running ``bisnesgpt run meta``; restartable after a kill."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str = "meta") -> None:
        self.workdir = workdir
        self.env = env
        self.port = int(env["META_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.generation = 0
        self.proc = self._spawn()

    def _spawn(self) -> Proc:
        self.generation += 1
        proc = Proc(["run", "meta"], cwd=self.workdir, env=self.env, log_name=f"{self.name}-{self.generation}")
        wait_until(lambda: http_ok(f"{self.url}/health"), timeout=60, what="meta /health 200")
        return proc

    def kill9(self) -> None:
        import signal

        self.proc.signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        self.proc = self._spawn()

    def close(self) -> None:
        self.proc.kill_tree()


@contextmanager
def running(*things: Any) -> Iterator[None]:
    """Close every spawned helper at the end, also when the test fails."""
    try:
        yield
    finally:
        for thing in reversed(things):
            thing.close()


async def raw_fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# --- a database and a Redis db for a whole test module ---------------------------------------------


@contextmanager
def module_redis(redis_server_url: str) -> Iterator[str]:
    from tests.support.servers import redis_database

    with redis_database(redis_server_url) as url:
        yield url


async def module_database(pg_server_url: str, template_database: str) -> str:
    from tests.conftest import create_database
    from tests.support.servers import unique_name

    return await create_database(pg_server_url, unique_name("bgpt_meta"), template=template_database)


async def drop_module_database(pg_server_url: str, url: str) -> None:
    from tests.conftest import drop_database
    from tests.support.servers import database_name

    await drop_database(pg_server_url, database_name(url))
