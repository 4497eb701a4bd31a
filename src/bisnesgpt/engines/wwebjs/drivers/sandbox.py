"""The ``sandbox`` driver: a WhatsApp Web client of the sandbox network server.

It talks to ``bisnesgpt sandbox wweb serve`` exactly as a linked device talks to WhatsApp:
one WebSocket per session (``/ws/chat``), application-level keepalive pings, media uploaded
over HTTP first and referenced by handle, receipts confirmed after they were applied. The
network lives in its own process, so what it recorded survives anything that happens to
the wwebjs process. Message ids are derived from our message ids (see ``protocol``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bisnesgpt.engines.wwebjs.driver import (
    Authenticated,
    DeliveryAck,
    Disconnected,
    DriverConnectError,
    DriverError,
    EventSink,
    InboundMedia,
    InboundMessage,
    LoggedOut,
    NotConnected,
    OutgoingMessage,
    PairingCode,
    PairingUnavailable,
    QrCode,
    Ready,
    SendRejected,
    SentMessage,
    SessionKey,
)
from bisnesgpt.engines.wwebjs.drivers.faults import DriverFaults
from bisnesgpt.engines.wwebjs.media import MediaFetcher
from bisnesgpt.sandbox.wweb import protocol as p

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
SEND_ERRORS = {
    p.NOT_ON_WHATSAPP: "RECIPIENT_NOT_ON_WHATSAPP",
    p.MEDIA_TOO_LARGE: "MEDIA_TOO_LARGE",
    p.BAD_REQUEST: "INVALID_PAYLOAD",
}


class SandboxDriver:
    name = "sandbox"

    def __init__(self, base_url: str, *, process_name: str, holder: str, media: MediaFetcher) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = ("wss://" if self.base_url.startswith("https://") else "ws://") + \
            self.base_url.split("://", 1)[1] + p.WS_PATH
        self.process_name = process_name
        self.media = media
        self.faults = DriverFaults()
        self.holder = holder
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.media.timeout, trust_env=False)
        return self._http

    async def open(self) -> None:
        self.http  # noqa: B018 - created after the process started, not at import

    def session(self, key: SessionKey, sink: EventSink, auth_state: dict[str, Any] | None) -> SandboxSession:
        return SandboxSession(self, key, sink, auth_state)

    async def close(self) -> None:
        await self.faults.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def client_info(self) -> dict[str, Any]:
        return {"process": self.process_name, "pid": os.getpid(), "host": socket.gethostname(), "holder": self.holder}


class SandboxSession:
    def __init__(self, driver: SandboxDriver, key: SessionKey, sink: EventSink,
                 auth_state: dict[str, Any] | None) -> None:
        self.driver = driver
        self.key = key
        self.sink = sink
        self.auth = auth_state
        self.ws: ClientConnection | None = None
        self.ready = False
        self._refs = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pairing: asyncio.Future[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._end_reason: str | None = None
        self._logged_out: str | None = None
        self._keepalive = (5.0, 15.0)
        self._last_pong = time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, pairing_phone: str | None = None) -> None:
        try:
            self.ws = await connect(self.driver.ws_url, open_timeout=CONNECT_TIMEOUT, ping_interval=None,
                                    max_size=None, proxy=None, compression=None)
            welcome = json.loads(await asyncio.wait_for(self.ws.recv(), CONNECT_TIMEOUT))
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed, ValueError) as exc:
            await self._close_socket()
            raise DriverConnectError(f"cannot reach the sandbox WhatsApp network at {self.driver.base_url}: "
                                     f"{exc or type(exc).__name__}") from exc
        keepalive = welcome.get("keepalive") or {}
        self._keepalive = (float(keepalive.get("interval") or 5.0), float(keepalive.get("timeout") or 15.0))
        self._last_pong = time.monotonic()
        await self._send_frame({"type": "hello", "session": str(self.key), "client": self.driver.client_info(),
                                "auth": self.auth, "pairPhone": pairing_phone})
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"sandbox-read:{self.key}"),
                       asyncio.create_task(self._ping_loop(), name=f"sandbox-ping:{self.key}")]

    async def stop(self) -> None:
        self._stopped = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self._close_socket()
        self._fail_pending(NotConnected("session stopped"))

    async def logout(self) -> None:
        if self.ws is None:
            raise NotConnected("not connected")
        await self._send_frame({"type": "logout"})
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(self.ws.wait_closed(), 5)

    async def request_pairing_code(self, phone_number: str) -> str:
        if self.ws is None or self.ready:
            raise PairingUnavailable("a pairing code needs a connection waiting to be paired")
        self._pairing = asyncio.get_running_loop().create_future()
        await self._send_frame({"type": "pair_phone", "phone": phone_number})
        return await asyncio.wait_for(self._pairing, 15)

    # --- sending ----------------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> SentMessage:
        if self.ws is None or not self.ready:
            raise NotConnected(f"session {self.key} is not ready")
        await self.driver.faults.before_send()
        body: dict[str, Any] = {"id": p.wa_message_id(message.client_id), "to": message.to, "kind": message.kind,
                                "text": message.text, "targetId": message.target_id, "replyTo": message.reply_to,
                                "location": message.location, "previewUrl": message.preview_url or None}
        if message.media is not None:
            body["media"] = await self._upload(message)
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._send_frame({"type": "send", "ref": ref,
                                    "message": {k: v for k, v in body.items() if v is not None}})
            result = await future
        finally:
            self._pending.pop(ref, None)
        error = result.get("error")
        if error:
            code = str(error.get("code"))
            if code == p.NOT_READY:
                raise NotConnected(str(error.get("message")))
            if code in SEND_ERRORS:
                raise SendRejected(str(error.get("message")), code=SEND_ERRORS[code])
            raise DriverError(f"send failed: {error.get('message')} ({code})")
        return SentMessage(str(result["id"]), float(result.get("timestamp") or time.time()),
                           bool(result.get("duplicate")))

    async def _upload(self, message: OutgoingMessage) -> dict[str, Any]:
        assert message.media is not None
        media = await self.driver.media.fetch(message.media, client=self.driver.http)
        try:
            response = await self.driver.http.post(f"{self.driver.base_url}/media/upload", content=media.data,
                                                   params={"name": media.filename},
                                                   headers={"content-type": media.mime_type})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DriverError(f"media upload failed: {exc or type(exc).__name__}") from exc
        uploaded = response.json()
        return {"handle": uploaded["handle"], "sha256": uploaded["sha256"], "size": uploaded["size"],
                "mime": media.mime_type, "filename": media.filename}

    # --- the connection ---------------------------------------------------------------------------

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        if self.ws is None:
            raise NotConnected("not connected")
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise NotConnected(f"connection closed: {exc}") from exc

    async def _close_socket(self, *, abort: bool = False) -> None:
        """Close (or, when the peer no longer answers, drop) the connection."""
        ws, self.ws = self.ws, None
        self.ready = False
        if ws is None:
            return
        if abort:
            ws.transport.abort()  # no closing handshake with a network that does not answer
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 3)

    def _fail_pending(self, exc: DriverError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        if self._pairing is not None and not self._pairing.done():
            self._pairing.set_exception(PairingUnavailable(exc.detail))

    async def _ping_loop(self) -> None:
        interval, timeout = self._keepalive
        n = 0
        while self.ws is not None:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_pong > timeout:
                self._end_reason = f"keepalive timeout: no answer from the network for {timeout:g}s"
                log.warning("session %s: %s", self.key, self._end_reason)
                await self._close_socket(abort=True)
                return
            n += 1
            with contextlib.suppress(NotConnected):
                await self._send_frame({"type": "ping", "n": n})

    async def _read_loop(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    await self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            self.ready = False
            self._fail_pending(NotConnected(self._end_reason or "connection lost"))
            if not self._stopped:
                if self._logged_out is not None:
                    self.sink(LoggedOut(self._logged_out))
                else:
                    self.sink(Disconnected(self._end_reason or "connection closed by the network"))

    async def _handle(self, frame: dict[str, Any]) -> None:
        handler = self._handlers.get(str(frame.get("type")))
        if handler is not None:
            handler(frame)

    @property
    def _handlers(self) -> dict[str, Any]:
        return {"pong": self._on_pong, "qr": self._on_qr, "pairing_code": self._on_pairing_code,
                "pair_success": self._on_pair_success, "authenticated": self._on_authenticated,
                "ready": self._on_ready, "send_result": self._on_send_result, "ack": self._on_ack,
                "message": self._on_message, "fault": self._on_fault, "disconnect": self._on_disconnect,
                "logged_out": self._on_logged_out, "error": self._on_error}

    def _on_pong(self, _frame: dict[str, Any]) -> None:
        self._last_pong = time.monotonic()

    def _on_qr(self, frame: dict[str, Any]) -> None:
        self.sink(QrCode(str(frame["code"])))

    def _on_pairing_code(self, frame: dict[str, Any]) -> None:
        code = str(frame["code"])
        if self._pairing is not None and not self._pairing.done():
            self._pairing.set_result(code)
        self.sink(PairingCode(code, str(frame.get("phone") or "")))

    def _on_pair_success(self, frame: dict[str, Any]) -> None:
        self.auth = dict(frame["auth"])
        self.sink(Authenticated(self.auth, phone_number=frame.get("phone"), device_id=self.auth.get("deviceId")))

    def _on_authenticated(self, frame: dict[str, Any]) -> None:
        self.sink(Authenticated(dict(self.auth or {}), phone_number=frame.get("phone"),
                                device_id=frame.get("deviceId")))

    def _on_ready(self, frame: dict[str, Any]) -> None:
        self.ready = True
        self.sink(Ready(frame.get("phone"), frame.get("pushName")))

    def _on_send_result(self, frame: dict[str, Any]) -> None:
        future = self._pending.get(int(frame.get("ref") or 0))
        if future is not None and not future.done():
            future.set_result(frame)

    def _on_ack(self, frame: dict[str, Any]) -> None:
        self._last_pong = time.monotonic()
        message_id, level = str(frame["id"]), str(frame["level"])
        self.sink(DeliveryAck(message_id, level, confirm=self._confirmer(  # type: ignore[arg-type]
            {"type": "ack_received", "acks": [{"id": message_id, "level": level}]})))

    def _on_message(self, frame: dict[str, Any]) -> None:
        self._last_pong = time.monotonic()
        self.sink(self._inbound(frame["message"]))

    def _on_fault(self, frame: dict[str, Any]) -> None:
        self.driver.faults.apply(str(frame.get("fault")), frame)

    def _on_disconnect(self, frame: dict[str, Any]) -> None:
        self._end_reason = f"disconnected by the network: {frame.get('reason')}"

    def _on_logged_out(self, frame: dict[str, Any]) -> None:
        self._logged_out = str(frame.get("reason") or "logged out")

    def _on_error(self, frame: dict[str, Any]) -> None:
        log.warning("session %s: network error: %s", self.key, frame.get("message"))
        if self._pairing is not None and not self._pairing.done():
            self._pairing.set_exception(PairingUnavailable(str(frame.get("message"))))

    def _confirmer(self, frame: dict[str, Any]) -> Any:
        async def confirm() -> None:
            with contextlib.suppress(NotConnected):
                await self._send_frame(frame)

        return confirm

    def _inbound(self, message: dict[str, Any]) -> InboundMessage:
        kind = str(message.get("type") or "text")
        media_body = message.get("media") if isinstance(message.get("media"), dict) else None
        media = None
        if kind in p.MEDIA_KINDS:
            media_body = media_body or {}
            media = InboundMedia(kind, mime_type=media_body.get("mime"), filename=media_body.get("filename"),
                                 size=media_body.get("size"), sha256=media_body.get("sha256"),
                                 url=media_body.get("url"), caption=message.get("text"))
        message_id = str(message["id"])
        return InboundMessage(
            id=message_id, chat_id=str(message.get("chat") or f"{message.get('from')}@c.us"),
            sender=str(message.get("from") or ""), timestamp=float(message.get("timestamp") or time.time()),
            type=kind, text=message.get("text") if media is None else None, media=media,
            quoted_id=message.get("quotedId"), push_name=message.get("pushName"), raw=message,
            confirm=self._confirmer({"type": "receipt", "ids": [message_id]}),
        )
