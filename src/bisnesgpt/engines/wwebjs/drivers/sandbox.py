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
from collections.abc import AsyncIterator, Callable

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.engines.wwebjs.driver import (
    AuthState,
    Confirm,
    GroupChanges,
    GroupInfo,
    MediaDownload,
    MediaSource,
    OutgoingMessage,
    ParticipantAction,
    ParticipantResult,
    SentMessage,
    SessionKey,
    TypingState,
)
from bisnesgpt.engines.wwebjs.driver_errors import DriverConnectError, DriverError, NotConnected, PairingUnavailable
from bisnesgpt.engines.wwebjs.driver_events import EventSink
from bisnesgpt.engines.wwebjs.drivers import sandbox_wire as wire
from bisnesgpt.engines.wwebjs.drivers.base import SessionBase
from bisnesgpt.engines.wwebjs.drivers.faults import DriverFaults
from bisnesgpt.engines.wwebjs.media import MediaDownloadFailed, MediaFetcher
from bisnesgpt.sandbox.wweb import protocol as p

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
GROUP_TIMEOUT = 15.0


class SandboxDriver:
    """Sessions on the sandbox network server (``WWEBJS_SANDBOX_URL``), sharing one HTTP client for media."""

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
        """The HTTP client for media downloads and uploads (created on first use)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.media.timeout, trust_env=False)
        return self._http

    async def open(self) -> None:
        """Create the HTTP client (inside the running process, not at import)."""
        self.http  # noqa: B018 - created after the process started, not at import

    def session(self, key: SessionKey, sink: EventSink, auth_state: AuthState | None) -> SandboxSession:
        """A new WebSocket session for ``key`` (resuming with ``auth_state`` when it has one)."""
        return SandboxSession(self, key, sink, auth_state)

    async def close(self) -> None:
        """Undo the faults acted out here and close the HTTP client."""
        await self.faults.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def client_info(self) -> wire.ClientInfo:
        """Who connects, as the ``hello`` frame says."""
        return wire.ClientInfo(process=self.process_name, pid=os.getpid(), host=socket.gethostname(),
                               holder=self.holder)


class SandboxSession(SessionBase):
    """One phone's WebSocket to the sandbox network: keepalive, frames in and out, sends by ``ref``."""

    def __init__(self, driver: SandboxDriver, key: SessionKey, sink: EventSink,
                 auth_state: AuthState | None) -> None:
        super().__init__(key, sink)
        self.driver = driver
        self.auth = auth_state
        self.ws: ClientConnection | None = None
        self._refs = itertools.count(1)
        self._pending: dict[int, asyncio.Future[JsonObject]] = {}
        self._pairing: asyncio.Future[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._end_reason: str | None = None
        self._logged_out: str | None = None
        self._keepalive = (5.0, 15.0)
        self._last_pong = time.monotonic()

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is open."""
        return self.ws is not None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, pairing_phone: str | None = None) -> None:
        """Connect, say hello (resume, or pair: by QR, or by code for ``pairing_phone``), start reading."""
        try:
            self.ws = await connect(self.driver.ws_url, open_timeout=CONNECT_TIMEOUT, ping_interval=None,
                                    max_size=None, proxy=None, compression=None)
            welcome = json.loads(await asyncio.wait_for(self.ws.recv(), CONNECT_TIMEOUT))
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed, ValueError) as exc:
            await self._close_socket()
            raise DriverConnectError(f"cannot reach the sandbox WhatsApp network at {self.driver.base_url}: "
                                     f"{exc or type(exc).__name__}") from exc
        keepalive = wire.member(welcome, "keepalive") if isinstance(welcome, dict) else {}
        self._keepalive = (wire.number(keepalive, "interval") or 5.0, wire.number(keepalive, "timeout") or 15.0)
        self._last_pong = time.monotonic()
        await self._send_frame(wire.HelloFrame(type="hello", session=str(self.key), client=self.driver.client_info(),
                                               auth=self.auth, pairPhone=pairing_phone))
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"sandbox-read:{self.key}"),
                       asyncio.create_task(self._ping_loop(), name=f"sandbox-ping:{self.key}")]

    async def stop(self) -> None:
        """Close the socket (the device stays linked) and fail what still waits for an answer."""
        self.stopped = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self._close_socket()
        self._fail_pending(NotConnected("session stopped"))

    async def logout(self) -> None:
        """Unlink the device; the network then closes the socket."""
        await self._send_frame(wire.LogoutFrame(type="logout"))
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            if self.ws is not None:
                await asyncio.wait_for(self.ws.wait_closed(), 5)

    async def request_pairing_code(self, phone_number: str) -> str:
        """A pairing code for ``phone_number``, from the network (it also arrives as an event)."""
        self.require_pairable()
        self._pairing = asyncio.get_running_loop().create_future()
        await self._send_frame(wire.PairPhoneFrame(type="pair_phone", phone=phone_number))
        return await asyncio.wait_for(self._pairing, 15)

    # --- sending ----------------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> SentMessage:
        """Send one message (media uploaded first) and wait for its ``send_result``."""
        self.require_ready()
        await self.driver.faults.before_send()
        media = await self._upload(message.media) if message.media is not None else None
        ref = next(self._refs)
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._send_frame(wire.SendFrame(type="send", ref=ref, message=wire.wire_message(message, media)))
            result = await future
        finally:
            self._pending.pop(ref, None)
        return wire.sent_message(result)

    # --- groups -----------------------------------------------------------------------------------

    async def _group(self, frame: wire.GroupFrame) -> JsonObject:
        """One group operation, answered by the network's ``group_result``."""
        self.require_ready()
        ref = next(self._refs)
        future: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            frame.setdefault("type", "group")
            frame["ref"] = ref
            await self._send_frame(frame)
            result = await asyncio.wait_for(future, GROUP_TIMEOUT)
        finally:
            self._pending.pop(ref, None)
        return wire.group_result(result)

    async def check_numbers(self, numbers: list[str]) -> dict[str, bool]:
        """Ask the network which numbers are on WhatsApp (a ``check`` frame)."""
        result = await self._group({"type": "check", "numbers": numbers})
        found = wire.member(result, "numbers")
        return {n: bool(found.get(n)) for n in numbers}

    async def typing(self, chat_id: str, state: TypingState) -> None:
        """A ``presence`` frame (the network records it; nothing to wait for)."""
        self.require_ready()
        await self._send_frame(wire.PresenceFrame(type="presence", chat=chat_id, state=state))

    async def groups(self) -> list[GroupInfo]:
        """The groups this phone is in."""
        found = (await self._group({"op": "list"})).get("groups")
        return [wire.group_info(g) for g in (found if isinstance(found, list) else []) if isinstance(g, dict)]

    async def group_info(self, group_id: str) -> GroupInfo:
        """One group, with its invite link when this phone is an admin."""
        return wire.group_info(wire.member(await self._group({"op": "info", "group": group_id}), "group"))

    async def create_group(self, subject: str, participants: list[str]) -> tuple[GroupInfo, list[ParticipantResult]]:
        """A new group owned by this phone, and what became of each participant."""
        result = await self._group({"op": "create", "subject": subject, "participants": participants})
        return wire.group_info(wire.member(result, "group")), wire.participant_results(result)

    async def update_participants(self, group_id: str, action: ParticipantAction,
                                  numbers: list[str]) -> list[ParticipantResult]:
        """Add, remove, promote or demote; one result per number."""
        return wire.participant_results(await self._group({"op": "participants", "group": group_id,
                                                           "action": action, "participants": numbers}))

    async def update_group(self, group_id: str, changes: GroupChanges) -> GroupInfo:
        """Change subject, description or settings; the group afterwards."""
        values: JsonObject = {"subject": changes.subject, "description": changes.description,
                              "announce": changes.announce, "locked": changes.locked}
        result = await self._group({"op": "update", "group": group_id,
                                    "changes": {k: v for k, v in values.items() if v is not None}})
        return wire.group_info(wire.member(result, "group"))

    async def invite_link(self, group_id: str, *, revoke: bool = False) -> str:
        """The invite link (a new one with ``revoke``)."""
        return str((await self._group({"op": "invite", "group": group_id, "revoke": revoke})).get("inviteLink"))

    async def join_group(self, invite: str) -> str:
        """Join by invite link; the group's id."""
        return str((await self._group({"op": "join", "invite": invite})).get("group"))

    async def leave_group(self, group_id: str) -> None:
        """Leave the group."""
        await self._group({"op": "leave", "group": group_id})

    async def group_picture(self, group_id: str) -> str | None:
        """The group picture's URL on the network's media server (None: no picture)."""
        handle = (await self._group({"op": "picture", "group": group_id, "action": "get"})).get("picture")
        return f"{self.driver.base_url}/media/{handle}" if isinstance(handle, str) and handle else None

    async def set_group_picture(self, group_id: str, image: MediaSource) -> str:
        """Upload the image, then make it the group's picture; its picture id."""
        uploaded = await self._upload(image)
        result = await self._group({"op": "picture", "group": group_id, "action": "set", "media": uploaded})
        return str(result.get("pictureId"))

    async def remove_group_picture(self, group_id: str) -> None:
        """Remove the group's picture."""
        await self._group({"op": "picture", "group": group_id, "action": "remove"})

    async def _upload(self, source: MediaSource) -> wire.UploadedMedia:
        media = await self.driver.media.fetch(source, client=self.driver.http)
        try:
            response = await self.driver.http.post(f"{self.driver.base_url}/media/upload", content=media.data,
                                                   params={"name": media.filename},
                                                   headers={"content-type": media.mime_type})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DriverError(f"media upload failed: {exc or type(exc).__name__}") from exc
        uploaded = response.json()
        return wire.UploadedMedia(handle=uploaded["handle"], sha256=uploaded["sha256"], size=uploaded["size"],
                                  mime=media.mime_type, filename=media.filename)

    # --- the connection ---------------------------------------------------------------------------

    async def _send_frame(self, frame: wire.ClientFrame) -> None:
        ws = self.ws
        if ws is None:
            raise NotConnected("not connected")
        try:
            await ws.send(json.dumps(frame))
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
                await self._send_frame(wire.PingFrame(type="ping", n=n))

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
                    self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            self.ready = False
            self._fail_pending(NotConnected(self._end_reason or "connection lost"))
            if not self.stopped:  # when the manager closed it, there is nothing to report
                if self._logged_out is not None:
                    self.report_logged_out(self._logged_out)
                else:
                    self.report_disconnected(self._end_reason or "connection closed by the network")

    def _handle(self, frame: JsonObject) -> None:
        handler = self._handlers.get(str(frame.get("type")))
        if handler is not None:
            handler(frame)

    @property
    def _handlers(self) -> dict[str, Callable[[JsonObject], None]]:
        return {"pong": self._on_pong, "qr": self._on_qr, "pairing_code": self._on_pairing_code,
                "pair_success": self._on_pair_success, "authenticated": self._on_authenticated,
                "ready": self._on_ready, "send_result": self._on_send_result, "group_result": self._on_send_result,
                "check_result": self._on_send_result,
                "ack": self._on_ack,
                "message": self._on_message, "fault": self._on_fault, "disconnect": self._on_disconnect,
                "logged_out": self._on_logged_out, "error": self._on_error}

    def _on_pong(self, _frame: JsonObject) -> None:
        self._last_pong = time.monotonic()

    def _on_qr(self, frame: JsonObject) -> None:
        self.report_qr(str(frame["code"]))

    def _on_pairing_code(self, frame: JsonObject) -> None:
        code = str(frame["code"])
        if self._pairing is not None and not self._pairing.done():
            self._pairing.set_result(code)
        self.report_pairing_code(code, wire.text(frame, "phone") or "")

    def _on_pair_success(self, frame: JsonObject) -> None:
        self.auth = dict(wire.member(frame, "auth"))
        self.report_authenticated(self.auth, phone_number=wire.text(frame, "phone"),
                                  device_id=wire.text(self.auth, "deviceId"))

    def _on_authenticated(self, frame: JsonObject) -> None:
        self.report_authenticated(dict(self.auth or {}), phone_number=wire.text(frame, "phone"),
                                  device_id=wire.text(frame, "deviceId"))

    def _on_ready(self, frame: JsonObject) -> None:
        self.report_ready(wire.text(frame, "phone"), wire.text(frame, "pushName"))

    def _on_send_result(self, frame: JsonObject) -> None:
        ref = wire.number(frame, "ref")
        future = self._pending.get(int(ref) if ref is not None else 0)
        if future is not None and not future.done():
            future.set_result(frame)

    def _on_ack(self, frame: JsonObject) -> None:
        self._last_pong = time.monotonic()
        message_id, level = str(frame["id"]), wire.ack_level(frame)
        if level is None:
            log.warning("session %s: ack of unknown level %r for %s ignored", self.key, frame.get("level"), message_id)
            return
        confirm = self._confirmer(wire.AckReceivedFrame(type="ack_received",
                                                        acks=[wire.AckReceived(id=message_id, level=level)]))
        self.report_ack(message_id, level, confirm, at=wire.ack_time(frame))

    def _on_message(self, frame: JsonObject) -> None:
        self._last_pong = time.monotonic()
        message = wire.member(frame, "message")
        confirm = self._confirmer(wire.ReceiptFrame(type="receipt", ids=[str(message["id"])]))
        if wire.text(message, "type") == p.POLL_VOTE:
            self.sink(wire.poll_vote(message, confirm))
            return
        if wire.text(message, "type") in p.GROUP_NOTIFICATIONS:
            event = wire.group_event(message, confirm)
            if event is not None:
                self.sink(event)
            return
        self.report_inbound(wire.inbound_message(message, confirm, self._media_download))

    def _media_download(self, url: str) -> MediaDownload:
        """Streams a media URL from the network's media server (the sandbox's stand-in for WhatsApp's CDN)."""
        async def chunks() -> AsyncIterator[bytes]:
            try:
                async with self.driver.http.stream("GET", url) as response:
                    if response.status_code >= 400:
                        raise MediaDownloadFailed(f"the media server answered {response.status_code}")
                    async for chunk in response.aiter_bytes(256 * 1024):
                        yield chunk
            except httpx.HTTPError as exc:
                raise MediaDownloadFailed(f"media download failed: {exc or type(exc).__name__}") from exc

        return chunks

    def _on_fault(self, frame: JsonObject) -> None:
        self.driver.faults.apply(str(frame.get("fault")), frame)

    def _on_disconnect(self, frame: JsonObject) -> None:
        self._end_reason = f"disconnected by the network: {frame.get('reason')}"

    def _on_logged_out(self, frame: JsonObject) -> None:
        self._logged_out = str(frame.get("reason") or "logged out")

    def _on_error(self, frame: JsonObject) -> None:
        log.warning("session %s: network error: %s", self.key, frame.get("message"))
        if self._pairing is not None and not self._pairing.done():
            self._pairing.set_exception(PairingUnavailable(str(frame.get("message"))))

    def _confirmer(self, frame: wire.ClientFrame) -> Confirm:
        async def confirm() -> None:
            with contextlib.suppress(NotConnected):
                await self._send_frame(frame)

        return confirm
