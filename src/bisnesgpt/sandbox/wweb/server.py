"""``bisnesgpt sandbox wweb serve``: the sandbox network over HTTP and WebSocket.

* ``WS /ws/chat`` — what the ``sandbox`` driver connects to (protocol in ``protocol.py``);
* ``POST /media/upload``, ``GET /media/{handle}`` — the media servers the driver uploads to;
* ``GET /samples/{name}`` — sample files to send by URL (``image.png``, ``document.pdf``,
  ``video.mp4``, ``audio.ogg``, ``large.bin?size=N``);
* ``/admin/...`` — scan a session's QR or pairing code, inject inbound messages and faults,
  read every recorded message and connection, create and change groups as other phones
  (``/admin/groups``), change delays (see ``bisnesgpt sandbox wweb --help``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bisnesgpt import __version__
from bisnesgpt.sandbox.http import AN_OBJECT, ANYTHING, decoded
from bisnesgpt.sandbox.jsonvalues import as_text
from bisnesgpt.sandbox.wweb import protocol as p
from bisnesgpt.sandbox.wweb.config import NetworkConfig
from bisnesgpt.sandbox.wweb.network import Network
from bisnesgpt.sandbox.wweb.switchboard import NetworkError

log = logging.getLogger(__name__)

MAX_UPLOAD = 200 << 20
SAMPLE_TYPES = {"image.png": "image/png", "document.pdf": "application/pdf", "video.mp4": "video/mp4",
                "audio.ogg": "audio/ogg", "sticker.webp": "image/webp", "large.bin": "application/octet-stream"}


def _problem(status: int, detail: str) -> JSONResponse:
    """The sandbox's error answer (RFC 9457 problem details)."""
    return JSONResponse({"title": "sandbox error", "status": status, "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def _sample_png() -> bytes:
    import segno

    buffer = io.BytesIO()
    segno.make_qr("bisnesgpt sandbox sample image").save(buffer, kind="png", scale=4)
    return buffer.getvalue()


def _sample(name: str) -> bytes:
    if name == "image.png":
        return _sample_png()
    if name == "document.pdf":
        return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
                b"trailer<</Root 1 0 R>>\n%%EOF\n")
    # Deterministic filler for video/audio/sticker: the network only checks sizes.
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (200_000 // len(seed)))[:200_000]


def _session(company_id: str, phone_index: int) -> str:
    return p.session_label(company_id, phone_index)


def create_app(network: Network) -> FastAPI:
    """The sandbox network's HTTP and WebSocket app (``serve`` runs it with uvicorn)."""
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await network.shutdown()

    app = FastAPI(title="bisnesgpt sandbox WhatsApp-Web network", version=__version__, lifespan=lifespan)
    app.state.network = network

    @app.exception_handler(NetworkError)
    async def _network_error(_request: Request, exc: NetworkError) -> JSONResponse:
        return _problem(exc.status, exc.detail)

    @app.get("/health", response_model=AN_OBJECT)
    async def health() -> Response:
        return JSONResponse({"status": "ok", "sessions": len(network.live), "version": __version__})

    _chat_route(app, network)
    _media_routes(app, network)
    _admin_routes(app, network)
    return app


def _chat_route(app: FastAPI, network: Network) -> None:
    @app.websocket(p.WS_PATH)
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        remote = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else None
        conn = network.connect(websocket, remote)
        reason = "client closed"
        try:
            await conn.push(network.welcome())
            hello = await asyncio.wait_for(websocket.receive_json(), network.config.hello_timeout)
            await network.hello(conn, hello if isinstance(hello, dict) else {})
            # Like WhatsApp's servers: a client silent for a keepalive interval plus its timeout
            # (a dead or cut-off host) is dropped, so a successor's connection is not a conflict.
            silence = network.config.keepalive_interval + network.config.keepalive_timeout
            while conn.open:
                try:
                    frame = await asyncio.wait_for(websocket.receive_json(), silence)
                except TimeoutError:
                    reason = f"silent for {silence:g}s: dropped"
                    break
                if isinstance(frame, dict):
                    await network.frame(conn, frame)
        except WebSocketDisconnect:
            reason = conn.close_reason or "client closed"
        except TimeoutError:
            reason = "no hello in time"
        except NetworkError as exc:
            reason = exc.detail
            await conn.push({"type": "error", "message": exc.detail}, force=True)
        except (ValueError, json.JSONDecodeError) as exc:
            reason = f"bad frame: {exc}"
        except RuntimeError as exc:  # Starlette: receive after the socket closed
            reason = conn.close_reason or f"socket closed: {exc}"
        finally:
            network.closed(conn, conn.close_reason or reason)
            with contextlib.suppress(Exception):
                await websocket.close()


def _media_routes(app: FastAPI, network: Network) -> None:
    @app.post("/media/upload", response_model=ANYTHING)
    async def upload(request: Request, name: str | None = None) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD:
            return _problem(413, f"upload larger than {MAX_UPLOAD} bytes")
        data = await request.body()
        if len(data) > MAX_UPLOAD:
            return _problem(413, f"upload larger than {MAX_UPLOAD} bytes")
        handle = secrets.token_hex(16)
        (network.media_dir / handle).write_bytes(data)
        mime = request.headers.get("content-type", "application/octet-stream")
        digest = hashlib.sha256(data).hexdigest()
        network.records.add_media(handle, digest, len(data), mime, name)
        return JSONResponse({"handle": handle, "sha256": digest, "size": len(data), "mime": mime,
                             "url": f"{request.base_url}media/{handle}"})

    @app.get("/media/{handle}")
    async def media(handle: str) -> Response:
        found = network.records.media(handle)
        path = network.media_dir / handle
        if found is None or not path.is_file():
            return _problem(404, "no such media")
        return Response(path.read_bytes(), media_type=found["mime"])

    @app.get("/samples/{name}")
    async def sample(name: str, size: int = Query(default=1 << 20, ge=0, le=1 << 31)) -> Response:
        if name not in SAMPLE_TYPES:
            return _problem(404, f"no sample {name!r}; try {', '.join(SAMPLE_TYPES)}")
        if name == "large.bin":
            async def zeros() -> AsyncIterator[bytes]:
                left = size
                while left > 0:
                    chunk = min(left, 1 << 20)
                    left -= chunk
                    yield b"\0" * chunk

            return StreamingResponse(zeros(), media_type=SAMPLE_TYPES[name], headers={"content-length": str(size)})
        return Response(_sample(name), media_type=SAMPLE_TYPES[name])


def _admin_routes(app: FastAPI, network: Network) -> None:
    @app.get("/admin/config", response_model=AN_OBJECT)
    async def get_config() -> Response:
        return JSONResponse(network.config_view())

    @app.put("/admin/config", response_model=ANYTHING)
    async def put_config(changes: dict[str, object]) -> Response:
        try:
            network.config.update(decoded(changes))
        except KeyError as exc:
            return _problem(400, f"unknown setting {exc.args[0]!r}")
        except (TypeError, ValueError) as exc:
            return _problem(400, f"bad value: {exc}")
        return JSONResponse(network.config_view())

    @app.get("/admin/sessions", response_model=AN_OBJECT)
    async def sessions() -> Response:
        return JSONResponse({"sessions": [network.session_view(s) for s in network.sessions()]})

    @app.get("/admin/sessions/{company_id}/{phone_index}", response_model=AN_OBJECT)
    async def session(company_id: str, phone_index: int) -> Response:
        return JSONResponse(network.session_view(_session(company_id, phone_index)))

    @app.get("/admin/sessions/{company_id}/{phone_index}/qr.png")
    async def session_qr(company_id: str, phone_index: int) -> Response:
        view = network.session_view(_session(company_id, phone_index))
        if not view["qr"]:
            return _problem(404, "this session shows no QR code now")
        from bisnesgpt.engines.wwebjs.qr import qr_png

        return Response(qr_png(view["qr"]), media_type="image/png")

    @app.post("/admin/sessions/{company_id}/{phone_index}/scan", response_model=AN_OBJECT)
    async def scan(company_id: str, phone_index: int, body: dict[str, object] | None = None) -> Response:
        given = decoded(body or {})
        return JSONResponse(await network.scan(_session(company_id, phone_index), phone=as_text(given.get("phone")),
                                               code=as_text(given.get("code")),
                                               push_name=as_text(given.get("pushName"))))

    @app.post("/admin/sessions/{company_id}/{phone_index}/inbound", response_model=AN_OBJECT)
    async def inbound(company_id: str, phone_index: int, body: dict[str, object]) -> Response:
        return JSONResponse(await network.inject(_session(company_id, phone_index), decoded(body)))

    @app.post("/admin/sessions/{company_id}/{phone_index}/faults", response_model=AN_OBJECT)
    async def fault(company_id: str, phone_index: int, body: dict[str, object]) -> Response:
        return JSONResponse(await network.fault(_session(company_id, phone_index), decoded(body)))

    @app.delete("/admin/sessions/{company_id}/{phone_index}/faults", response_model=AN_OBJECT)
    async def clear_faults(company_id: str, phone_index: int) -> Response:
        return JSONResponse(await network.fault(_session(company_id, phone_index), {"type": "clear"}))

    @app.get("/admin/messages", response_model=AN_OBJECT)
    async def messages(session: str | None = None, direction: str | None = None,
                       chat: str | None = None) -> Response:
        found = network.records.messages(session=session, direction=direction, chat=chat)
        return JSONResponse({"messages": found, "count": len(found)})

    @app.get("/admin/presence", response_model=AN_OBJECT)
    async def presence(session: str) -> Response:
        found = network.records.presence(session)
        return JSONResponse({"presence": found, "count": len(found)})

    @app.get("/admin/reads", response_model=AN_OBJECT)
    async def reads(session: str) -> Response:
        found = network.records.read_receipts(session)
        return JSONResponse({"reads": found, "count": len(found)})

    @app.get("/admin/groups", response_model=AN_OBJECT)
    async def groups() -> Response:
        found = network.group_views()
        return JSONResponse({"groups": found, "count": len(found)})

    @app.post("/admin/groups", response_model=AN_OBJECT)
    async def create_group(body: dict[str, object]) -> Response:
        return JSONResponse(await network.group_act("", {**decoded(body), "action": "create"}))

    @app.post("/admin/groups/{group_id}/actions", response_model=AN_OBJECT)
    async def group_action(group_id: str, body: dict[str, object]) -> Response:
        return JSONResponse(await network.group_act(group_id, decoded(body)))

    @app.get("/admin/receipts", response_model=AN_OBJECT)
    async def receipts(session: str | None = None) -> Response:
        return JSONResponse({"receipts": network.records.receipts(session)})

    @app.get("/admin/connections", response_model=AN_OBJECT)
    async def connections(session: str | None = None) -> Response:
        found = network.records.connections(session)
        return JSONResponse({"connections": found, "overlaps": sum(c["overlapped"] for c in found)})


def serve(*, host: str, port: int, data_dir: Path | None, config: NetworkConfig, log_level: str = "INFO") -> None:
    """Run the sandbox network until interrupted (records in ``data_dir``, or in memory)."""
    import tempfile

    import uvicorn

    from bisnesgpt.core.logging import setup_logging
    from bisnesgpt.sandbox.wweb.records import Records

    setup_logging("sandbox-wweb", log_level)
    scratch = None
    if data_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="bisnesgpt-sandbox-wweb-")
        media_dir, records = Path(scratch.name) / "media", Records(None)
    else:
        media_dir, records = data_dir / "media", Records(data_dir / "network.sqlite3")
    network = Network(records, config, media_dir)
    app = create_app(network)
    log.info("sandbox WhatsApp-Web network on http://%s:%d (records: %s)", host, port,
             data_dir / "network.sqlite3" if data_dir else "in memory")
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, ws_ping_interval=None)
    finally:
        records.close()
        if scratch is not None:
            scratch.cleanup()
