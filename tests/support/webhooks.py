"""Webhook test support: a real HTTP receiver, event producers, README verifiers, API processes.

Events are produced the way the product produces them: ``message.status`` through real
status transitions (``store.insert_outbound`` + ``states.advance_status``), the other
types through ``record_tenant_event`` inside a transaction, as the engines call it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import states, store
from bisnesgpt.messaging.events import (
    MESSAGE_INBOUND,
    PHONE_STATUS,
    SESSION_STATUS,
    record_tenant_event,
)
from bisnesgpt.tenancy.store import create_api_key, create_company
from tests.support.polling import wait_until
from tests.support.procs import Proc, clean_env, free_port, http_ok

README = Path(__file__).resolve().parents[2] / "README.md"
ENCRYPTION_KEY = "ab" * 32
ADMIN_KEY = "admin-test-key-" + "x" * 20


# --- the receiver -----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() when the request was read
    status: int = 0  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event_id(self) -> str:
        return self.headers["x-bisnesgpt-event-id"]


@dataclass
class Behaviour:
    """How one path answers: ``fail_first`` 500s, then ``status``; optional delay or gate."""

    status: int = 200
    fail_first: int = 0
    fail_status: int = 500
    delay: float = 0.0
    gate: threading.Event | None = None  # requests wait (up to gate_timeout) until it is set
    gate_timeout: float = 60.0
    body: bytes = b'{"ok":true}'
    served: int = 0
    completed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Receiver:
    """A local HTTP server on a free port that records every request and answers per path."""

    def __init__(self, port: int | None = None) -> None:
        self.received: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # like real servers; else delayed ACKs add 40 ms per request

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                record = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                behaviour = receiver.behaviour(self.path)
                with behaviour.lock:
                    behaviour.served += 1
                    index = behaviour.served
                with receiver._lock:
                    receiver.received.append(record)
                if behaviour.gate is not None:
                    behaviour.gate.wait(behaviour.gate_timeout)
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                status = behaviour.fail_status if index <= behaviour.fail_first else behaviour.status
                record.status = status
                payload = behaviour.body if status < 300 else b'{"error":"receiver says no"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout); nothing to answer
                with behaviour.lock:
                    behaviour.completed += 1

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    def behaviour(self, path: str) -> Behaviour:
        with self._lock:
            return self.behaviours.setdefault(path, Behaviour())

    def set(self, path: str, **kwargs: Any) -> Behaviour:
        behaviour = Behaviour(**kwargs)
        with self._lock:
            self.behaviours[path] = behaviour
        return behaviour

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def successful(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests(path) if 200 <= r.status < 300]

    def event_ids(self, path: str | None = None, ok_only: bool = False) -> list[str]:
        return [r.event_id for r in (self.successful(path) if ok_only else self.requests(path))]

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 30, what: str = "") -> None:
        wait_until(lambda: predicate(self), timeout=timeout, interval=0.02, what=what)

    def close(self) -> None:
        for behaviour in self.behaviours.values():
            if behaviour.gate is not None:
                behaviour.gate.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(port: int | None = None) -> Iterator[Receiver]:
    server = Receiver(port)
    try:
        yield server
    finally:
        server.close()


# --- tenants and events --------------------------------------------------------------------------


async def new_company(db: Database, company_id: str | None = None) -> tuple[str, str]:
    """A company and one of its API keys: (company_id, key)."""
    company_id = company_id or f"co_{secrets.token_hex(4)}"
    async with db.transaction() as conn:
        await create_company(conn, company_id, company_id.upper())
        _record, key = await create_api_key(conn, company_id=company_id, name="test")
    return company_id, key


@dataclass
class Emitted:
    event_ids: list[str]
    committed_at: float  # time.time() right after COMMIT


async def emit_inbound(db: Database, company_id: str, *, text: str = "hello", phone_index: int = 0,
                       raw: dict[str, Any] | None = None) -> Emitted:
    """A ``message.inbound`` the way an engine records one (in its own transaction)."""
    async with db.transaction() as conn:
        event_id = await record_tenant_event(
            conn, company_id=company_id, phone_index=phone_index, type=MESSAGE_INBOUND,
            data={"message_id": str(uuid.uuid4()), "external_id": f"wamid.{secrets.token_hex(6)}",
                  "chat_id": "60123456789@c.us", "from": "60123456789", "type": "text", "text": text,
                  "timestamp": "2025-01-01T00:00:00Z", "provider": "sandbox"},
            raw=raw if raw is not None else {"entry": [{"changes": [{"value": {"messages": [{"text": text}]}}]}]},
        )
    return Emitted([event_id], time.time())


async def emit_session_status(db: Database, company_id: str, *, status: str = "qr", phone_index: int = 0) -> Emitted:
    async with db.transaction() as conn:
        data: dict[str, str] = {"status": status, "connection_type": "wwebjs"}
        if status == "qr":
            data["qr"] = "data:image/png;base64,iVBORw0KGgo="
        if status == "disconnected":
            data["reason"] = "logged out"
        event_id = await record_tenant_event(conn, company_id=company_id, phone_index=phone_index,
                                             type=SESSION_STATUS, data=data)
    return Emitted([event_id], time.time())


async def emit_phone_status(db: Database, company_id: str, *, status: str = "partner_removed") -> Emitted:
    async with db.transaction() as conn:
        event_id = await record_tenant_event(conn, company_id=company_id, phone_index=0, type=PHONE_STATUS,
                                             data={"status": status, "connection_type": "meta_direct",
                                                   "reason": "partner removed"})
    return Emitted([event_id], time.time())


MESSAGE_EVENT_IDS = """
SELECT id FROM tenant_events WHERE company_id = $1 AND data->>'message_id' = $2 ORDER BY id
"""


async def emit_message_statuses(db: Database, company_id: str, ladder: tuple[str, ...] = ("sending", "sent")
                                ) -> Emitted:
    """An outbound message (``queued`` event) moved along ``ladder`` by real status transitions."""
    async with db.transaction() as conn:
        record = await store.insert_outbound(conn, store.NewOutboundMessage(
            message_id=str(uuid.uuid4()), company_id=company_id, phone_index=0, provider="test",
            connection_type="wwebjs", chat_id="60123456789@c.us", message_type="text",
            payload={"to": "60123456789", "type": "text", "text": {"body": "hi"}}, queue_name="wwebjs-messages",
            process_name="test", content="hi",
        ))
        assert record is not None
        for status in ladder:
            await states.advance_status(conn, record.id, status, source="test",
                                        external_id=f"wamid.{record.message_id}" if status == "sent" else None)
        ids = [r["id"] for r in await conn.fetch(MESSAGE_EVENT_IDS, company_id, record.message_id)]
    return Emitted(ids, time.time())


# --- README verifiers --------------------------------------------------------------------------------


def readme_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- marker -->`` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert match, f"README has no code block after <!-- {marker} -->"
    return match.group(1)


def readme_python_verifier() -> Callable[..., bool]:
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("webhook-verify-python"), "README.md", "exec"), namespace)
    verifier: Callable[..., bool] = namespace["verify_bisnesgpt_signature"]
    return verifier


NODE_MAIN = """
const [secret, header, bodyBase64] = process.argv.slice(2);
console.log(verifyBisnesgptSignature(secret, Buffer.from(bodyBase64, "base64"), header) ? "valid" : "invalid");
"""


def write_node_verifier(directory: Path) -> Path:
    path = directory / "verify.js"
    path.write_text(readme_block("webhook-verify-node") + NODE_MAIN)
    return path


# --- API processes ------------------------------------------------------------------------------------


def api_env(database_url: str, redis_url: str, port: int, tmp: Path, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "API_PORT": str(port), "HOST": "127.0.0.1",
        "ENCRYPTION_KEY": ENCRYPTION_KEY, "ADMIN_API_KEY": ADMIN_KEY, "HEARTBEAT_INTERVAL": "1000",
        "DATA_DIR": str(tmp / "data"), "LOG_DIR": str(tmp / "logs"), "LOG_LEVEL": "INFO",
        "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": "true", "WEBHOOK_POLL_INTERVAL_SECONDS": "1",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.2", "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "1",
    }
    env.update(overrides)
    return clean_env(**env)


def spawn_api(tmp: Path, database_url: str, redis_url: str, *, name: str = "api", port: int | None = None,
              **overrides: str) -> tuple[Proc, str]:
    """``bisnesgpt run api`` with webhook settings for tests; returns (proc, base URL) once healthy."""
    port = port or free_port()
    proc = Proc(["run", "api"], cwd=tmp, env=api_env(database_url, redis_url, port, tmp, **overrides), log_name=name)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{base}/health") or proc.popen.poll() is not None, timeout=60,
                   what=f"{name} /health")
        if proc.popen.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{proc.output()[-3000:]}")
    except BaseException:
        proc.kill_tree()
        raise
    return proc, base


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_endpoint(base: str, key: str, url: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/webhooks", json={"url": url, **body}, headers=auth(key), timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.json())
