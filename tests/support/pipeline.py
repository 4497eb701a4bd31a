"""Test support for the message pipeline: tenants, spawned API processes, in-process workers.

``ApiServer`` runs the real ``bisnesgpt run api`` (its own process, real HTTP, the test's
PostgreSQL database and Redis logical db). ``Workers`` runs the shared worker helper
(``QueueWorker`` + ``SendJobProcessor``) in the test's event loop with a small engine the
test controls — the real engines plug into the same helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bisnesgpt.db.pool import Database
from bisnesgpt.health.events import EventRecorder
from bisnesgpt.messaging import store
from bisnesgpt.messaging.errors import PermanentSendError
from bisnesgpt.messaging.queue_worker import QueueWorker
from bisnesgpt.messaging.queues import META, WWEBJS, QueueProducer, QueueSpec
from bisnesgpt.messaging.send_processor import SendJobProcessor, SendReceipt
from bisnesgpt.messaging.send_store import PgSendStore
from bisnesgpt.messaging.store import touch_inbound_session
from bisnesgpt.phones import store as phones
from bisnesgpt.tenancy import store as tenancy
from tests.support.procs import Proc, clean_env, free_port

ENCRYPTION_KEY = "8f" * 32
ADMIN_KEY = "test-operator-key-0123456789abcdef"


@dataclass
class Tenant:
    company_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


# Contacts the pipeline tests write to; Meta phones get an open 24-hour window with them.
WINDOW_OPEN_CONTACTS = ("60123456789", "60198765432", "60111111111")


async def seed_tenant(db: Database, company_id: str, phones_by_index: dict[int, str | None] | None = None,
                      name: str = "") -> Tenant:
    """A company, one API key and its phones (index → connection_type; None stays NULL)."""
    async with db.transaction() as conn:
        await tenancy.create_company(conn, company_id, name or company_id.title())
        _record, key = await tenancy.create_api_key(conn, company_id=company_id, name="tests")
        for index, connection_type in (phones_by_index or {}).items():
            await set_phone(conn, company_id, index, connection_type)
    return Tenant(company_id, key)


async def set_phone(conn: Any, company_id: str, index: int, connection_type: str | None) -> None:
    fields: dict[str, str | None] = {}
    if connection_type in ("meta_direct", "meta_embedded"):
        fields = {"meta_phone_number_id": f"pn-{company_id}-{index}", "meta_waba_id": "waba-1"}
    elif connection_type == "360dialog":
        fields = {"dialog360_channel_id": f"ch-{company_id}-{index}", "dialog360_client_id": "cl-1"}
    await phones.upsert_phone(conn, company_id, index, connection_type=connection_type or "wwebjs", status="ready",
                              fields=fields)
    if connection_type in ("meta_direct", "meta_embedded", "360dialog"):
        # The Cloud API's 24-hour window: these contacts "wrote" just now, so free-form
        # sends to them are allowed (the API refuses them with TEMPLATE_REQUIRED otherwise).
        for contact in WINDOW_OPEN_CONTACTS:
            await touch_inbound_session(conn, company_id, index, contact, datetime.now(UTC))
    if connection_type is None:
        await conn.execute("UPDATE phone_configs SET connection_type = NULL WHERE company_id = $1 AND phone_index = $2",
                           company_id, index)


async def sent_message(db: Database, company_id: str, phone_index: int, chat_id: str, external_id: str,
                       message_id: str) -> store.MessageRecord:
    """A message that was already sent (has a provider id): a target for reply/react/edit/delete."""
    from bisnesgpt.messaging.states import advance_status

    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=message_id, company_id=company_id, phone_index=phone_index, provider="wwebjs",
            connection_type="wwebjs", chat_id=chat_id, message_type="text",
            payload={"type": "text", "text": {"body": "earlier"}}, queue_name="wwebjs-messages",
            process_name="wwebjs", content="earlier"))
        assert record is not None
        await advance_status(conn, record.id, "sending", source="test")
        await advance_status(conn, record.id, "sent", source="test", external_id=external_id)
        loaded = await store.load_message_pk(conn, record.id)
    assert loaded is not None
    return loaded


class ApiServer:
    """One real ``bisnesgpt run api`` process."""

    def __init__(self, workdir: Path, database_url: str, redis_url: str, *, instance_id: int = 0,
                 name: str = "api", **env: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.name = name
        self.env = clean_env(
            DATABASE_URL=database_url, REDIS_URL=redis_url, API_PORT=str(self.port), HOST="127.0.0.1",
            ENCRYPTION_KEY=ENCRYPTION_KEY, ADMIN_API_KEY=ADMIN_KEY, INSTANCE_ID=str(instance_id),
            HEARTBEAT_INTERVAL="1000", DATA_DIR=str(workdir / "data"),
            **env,
        )
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> ApiServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(["run", "api"], cwd=self.workdir, env=self.env, log_name=self.name)
        started = time.monotonic()
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.popen.poll() is not None:
                    raise AssertionError(f"api exited early:\n{self.proc.output()[-4000:]}")
                try:
                    if (await client.get(self.url + "/health", timeout=1.0)).status_code in (200, 503):
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"api not up after {timeout}s:\n{self.proc.output()[-4000:]}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.popen.poll() is None:
                self.proc.signal(signal.SIGTERM)
                self.proc.wait(30)
        finally:
            self.proc.kill_tree()
            self.proc = None

    def output(self) -> str:
        return self.proc.output() if self.proc else ""


@contextlib.asynccontextmanager
async def running_api(workdir: Path, database_url: str, redis_url: str, **kwargs: Any) -> AsyncIterator[ApiServer]:
    server = ApiServer(workdir, database_url, redis_url, **kwargs)
    try:
        yield await server.start()
    finally:
        server.stop()


@dataclass
class RecordingEngine:
    """Sends succeed with ``ext-<messageId>``; a text (or an edit's) starting with "FAIL" fails permanently;
    with ``hang_on_slow`` a text starting with "SLOW" never finishes (a worker to kill)."""

    provider: str = "test"
    hang_on_slow: bool = False
    sent: list[str] = field(default_factory=list)
    seen: list[store.MessageRecord] = field(default_factory=list)

    async def before_send(self, message: store.MessageRecord) -> None:
        return None

    async def send(self, message: store.MessageRecord) -> SendReceipt:
        self.seen.append(message)
        edit = message.payload.get("edit")
        text = message.payload.get("text") or (edit.get("text") if isinstance(edit, dict) else None)
        body = text.get("body", "") if isinstance(text, dict) else ""
        if self.hang_on_slow and isinstance(body, str) and body.startswith("SLOW"):
            print(f"hanging on {message.message_id}", flush=True)
            await asyncio.sleep(3600)
        if isinstance(body, str) and body.startswith("FAIL"):
            raise PermanentSendError("recipient cannot receive", code="131026", title="Message undeliverable")
        self.sent.append(message.message_id)
        return SendReceipt(external_id=f"ext-{message.message_id}")


class Workers:
    """In-process workers on the product's send queues, sending through ``engine``."""

    def __init__(self, db: Database, redis_url: str, engine: Any, specs: tuple[QueueSpec, ...] = (WWEBJS, META)):
        self.producer = QueueProducer(redis_url)  # enqueues each chat's next message as one ends
        events = EventRecorder(db, "test-worker")
        self.workers = [QueueWorker(redis_url, spec,
                                    SendJobProcessor(PgSendStore(db, self.producer), engine, spec,
                                                     process_name="test-worker", events=events))
                        for spec in specs]

    async def __aenter__(self) -> Workers:
        for worker in self.workers:
            await worker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            await worker.close(timeout=5)
        await self.producer.close()
