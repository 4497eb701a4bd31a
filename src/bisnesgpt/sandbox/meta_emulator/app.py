"""The Cloud API emulator's HTTP surface: a Graph look-alike plus ``/_emulator`` admin routes.

Cloud API (both auth profiles, any ``/vNN.N`` version prefix):

* ``POST /{version}/{phone_number_id}/messages`` (``Authorization: Bearer``) and
  ``POST /messages`` (``D360-API-KEY``) — validated against Meta's message-type schemas;
  the real success shape or the real error envelope; throughput (130429), pair rate
  (131056), unknown templates (132001), the 24-h window (131047, by webhook, as Meta
  does), injected error rules; then the signed status webhooks;
* ``GET /{version}/{phone_number_id}[?fields=…]`` — the phone number object (display
  number, verified name, quality rating, code verification and name status);
* media: ``POST …/media`` (multipart ``file``, ``type``, ``messaging_product``) → digit
  id; ``GET /{version}/{media_id}`` / ``GET /{media_id}`` → an expiring URL;
  ``GET /whatsapp_business/attachments/?mid=…&ext=…&hash=…`` (with the phone's credentials)
  → the bytes; ``DELETE`` likewise; unknown ids → 400 code 100 subcode 33.

Admin (``/_emulator/…``): phones, templates, contacts that have not written, error rules,
webhook behaviour, injected inbound messages and raw webhooks, and the request record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from bisnesgpt.sandbox.meta_emulator.graph_errors import error_body, unknown_object
from bisnesgpt.sandbox.meta_emulator.spec import MessageValidator, default_validator
from bisnesgpt.sandbox.meta_emulator.state import (
    EmulatedPhone,
    EmulatorState,
    RequestRecord,
    digits,
    new_wamid,
)
from bisnesgpt.sandbox.meta_emulator.webhooks import WebhookSender, envelope

VERSION_RE = re.compile(r"^v\d+\.\d+$")
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
MAX_MEDIA_BYTES = 100 * 1024 * 1024
ATTACHMENTS_PATH = "/whatsapp_business/attachments/"
# GET /{version}/{phone_number_id} without ?fields= (Meta's getPhoneNumberById).
PHONE_NUMBER_DEFAULT_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating")


class Emulator:
    """State, validator and webhook sender behind the routes."""

    def __init__(self, state: EmulatorState, validator: MessageValidator | None = None) -> None:
        self.state = state
        self.validator = validator or default_validator()
        self.webhook_record = RequestRecord()
        self.sender = WebhookSender(state.webhook, self.webhook_record)

    # --- helpers ------------------------------------------------------------------------------

    def _error(self, entry: dict[str, Any], code: int, *, details: str | None = None, message: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
        status, body = error_body(code, details=details, message=message)
        entry.pop("rule", None)
        self.state.requests.add(**entry, http_status=status, error_code=code)
        return JSONResponse(body, status_code=status, headers=headers)

    def _unknown(self, entry: dict[str, Any], object_id: str, method: str) -> JSONResponse:
        status, body = unknown_object(object_id, method)
        self.state.requests.add(**entry, http_status=status, error_code=100, error_subcode=33)
        return JSONResponse(body, status_code=status)

    def _bearer_problem(self, request: Request, phone: EmulatedPhone | None, entry: dict[str, Any]) \
            -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return self._error(entry, 190, message="An access token is required to request this resource.")
        if phone is not None and phone.access_token and not _same(token, phone.access_token):
            return self._error(entry, 190, message="Error validating access token: the token is invalid.")
        return None

    def _d360_phone(self, request: Request, entry: dict[str, Any]) -> tuple[EmulatedPhone | None, JSONResponse | None]:
        key = request.headers.get("d360-api-key", "")
        phone = self.state.phone_by_d360_key(key) if key else None
        if phone is None:
            return None, self._error(entry, 190, message="Invalid D360-API-KEY")
        entry["phone_number_id"] = phone.phone_number_id
        return phone, None

    # --- messages -----------------------------------------------------------------------------

    async def send(self, request: Request, phone: EmulatedPhone, entry: dict[str, Any]) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(entry, 100, details="The request body must be a JSON object.")
        entry["body"] = body
        if self.validator.is_mark_as_read(body):
            return self._mark_as_read(body, entry)
        filled = self.validator.with_defaults(body)
        entry.update(type=str(filled["type"]), to=filled.get("to"))
        return self._refusal(phone, filled, entry) or self._accept(phone, filled, entry)

    def _mark_as_read(self, body: dict[str, Any], entry: dict[str, Any]) -> JSONResponse:
        entry["operation"] = "mark_read"
        problem = self.validator.validate(body)
        if problem is not None:
            return self._error(entry, 100, details=problem.detail)
        self.state.requests.add(**entry, http_status=200, message_id=body.get("message_id"))
        return JSONResponse({"success": True})

    def _refusal(self, phone: EmulatedPhone, filled: dict[str, Any], entry: dict[str, Any]) -> JSONResponse | None:
        """The synchronous error answer for this send, if any (validation, limits, templates)."""
        return self._invalid(filled, entry) or self._limited(phone, filled, entry)

    def _invalid(self, filled: dict[str, Any], entry: dict[str, Any]) -> JSONResponse | None:
        problem = self.validator.validate(filled)
        if problem is not None:
            return self._error(entry, 100, details=problem.detail)
        if filled.get("messaging_product") != "whatsapp":
            return self._error(entry, 100, details="messaging_product must be 'whatsapp'.")
        individual = filled["recipient_type"] == "individual"
        wa_id = entry["wa_id"] = digits(filled["to"]) if individual else str(filled["to"])
        if individual and len(wa_id) < 6:
            return self._error(entry, 100, details=f"to: '{filled['to']}' is not a valid WhatsApp phone number.")
        return None

    def _limited(self, phone: EmulatedPhone, filled: dict[str, Any], entry: dict[str, Any]) -> JSONResponse | None:
        kind, wa_id = entry["type"], entry["wa_id"]
        rule = entry["rule"] = self.state.match_rule(phone.phone_number_id, wa_id, kind)
        if rule is not None and rule.mode == "sync":
            headers = _usage_header(phone, rule.usage_minutes) if rule.usage_minutes else None
            return self._error(entry, rule.code, details=rule.details, headers=headers)
        now = time.monotonic()
        if not phone.take_throughput_token(now):
            return self._error(entry, 130429)
        if not phone.take_pair_slot(wa_id, now):
            return self._error(entry, 131056)
        if kind == "template":
            template = filled["template"]
            name, language = str(template.get("name")), str((template.get("language") or {}).get("code"))
            if not self.state.template_known(name, language):
                return self._error(entry, 132001, details=f"template name ({name}) does not exist in {language}")
        return None

    def _accept(self, phone: EmulatedPhone, filled: dict[str, Any], entry: dict[str, Any]) -> JSONResponse:
        kind, wa_id, rule = entry["type"], entry["wa_id"], entry.pop("rule", None)
        failed_code, failed_details = self._async_failure(phone, wa_id, kind, filled, rule)
        wamid = new_wamid()
        self.state.requests.add(**entry, http_status=200, wamid=wamid, failed_code=failed_code)
        self.sender.schedule_ladder(phone, wamid, wa_id, failed_code=failed_code, failed_details=failed_details)
        message: dict[str, Any] = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": filled["to"], "wa_id": wa_id}],
                             "messages": [message]})

    def _async_failure(self, phone: EmulatedPhone, wa_id: str, kind: str, body: dict[str, Any],
                       rule: Any) -> tuple[int | None, str | None]:
        """Failures Meta reports by webhook after accepting the request."""
        if rule is not None:
            return int(rule.code), rule.details
        if kind != "template" and not self.state.has_written(phone.phone_number_id, wa_id):
            return 131047, None
        media = body.get(kind) if kind in MEDIA_TYPES else None
        if isinstance(media, dict) and "id" in media and str(media["id"]) not in self.state.media:
            return 131053, f"Media id {media['id']} was not uploaded to this phone number."
        return None, None

    # --- media --------------------------------------------------------------------------------

    async def upload(self, request: Request, phone: EmulatedPhone, entry: dict[str, Any]) -> JSONResponse:
        try:
            form = await request.form(max_part_size=MAX_MEDIA_BYTES)
        except Exception as exc:  # malformed multipart: a client mistake, never a 500
            return self._error(entry, 100, details=f"could not parse multipart body: {exc}")
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp":
            return self._error(entry, 100, details="The parameter messaging_product is required.")
        if not isinstance(upload, UploadFile):
            return self._error(entry, 100, details="The parameter file is required.")
        content = await upload.read()
        if len(content) > MAX_MEDIA_BYTES:
            return self._error(entry, 131053, details="The file is larger than 100 MB.")
        declared = form.get("type")
        mime = str(declared) if isinstance(declared, str) and declared else (upload.content_type or "")
        if not mime:
            return self._error(entry, 100, details="The media type could not be determined.")
        media = self.state.store_media(phone.phone_number_id, content, mime)
        self.state.requests.add(**entry, http_status=200, media_id=media.id, size=len(content))
        return JSONResponse({"id": media.id})

    def retrieve(self, request: Request, media_id: str, entry: dict[str, Any], *,
                 d360_phone: EmulatedPhone | None = None) -> JSONResponse:
        media = self.state.media.get(media_id)
        phone = self.state.phones.get(media.phone_number_id) if media else self.state.phones.get(media_id)
        if d360_phone is None:
            problem = self._bearer_problem(request, phone, entry)
            if problem is not None:
                return problem
        elif media is not None and media.phone_number_id != d360_phone.phone_number_id:
            media = None
        if media is None:
            if d360_phone is None and media_id in self.state.phones:
                return self._phone_info(request, entry, self.state.phones[media_id])
            return self._unknown(entry, media_id, "get")
        expires = int(time.time() + self.state.media_url_ttl)
        url = f"{str(request.base_url).rstrip('/')}{ATTACHMENTS_PATH}?{self.state.media_query(media.id, expires)}"
        self.state.requests.add(**entry, http_status=200, media_id=media.id)
        return JSONResponse({"messaging_product": "whatsapp", "url": url, "mime_type": media.mime_type,
                             "sha256": media.sha256_hex, "file_size": len(media.content), "id": media.id})

    def _phone_info(self, request: Request, entry: dict[str, Any], phone: EmulatedPhone) -> JSONResponse:
        """Meta's phone number object: the default fields, or those named in ``?fields=``."""
        entry["operation"] = "phone_number"
        entry["phone_number_id"] = phone.phone_number_id
        known = {
            "id": phone.phone_number_id, "display_phone_number": phone.display_phone_number,
            "verified_name": phone.verified_name, "quality_rating": phone.quality_rating,
            "code_verification_status": phone.code_verification_status, "name_status": phone.name_status,
            "status": phone.status, "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"},
            "messaging_limit_tier": "TIER_1K", "account_mode": "LIVE", "is_official_business_account": False,
        }
        asked = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]
        unknown = [f for f in asked if f not in known]
        if unknown:
            return self._error(entry, 100, message=f"(#100) Tried accessing nonexisting field ({unknown[0]}) on "
                                                   "node type (WhatsAppBusinessPhoneNumber)")
        fields = asked or list(PHONE_NUMBER_DEFAULT_FIELDS)
        self.state.requests.add(**entry, http_status=200)
        # Graph always includes the id.
        return JSONResponse({**{f: known[f] for f in fields}, "id": phone.phone_number_id})

    def delete(self, request: Request, media_id: str, entry: dict[str, Any], *,
               d360_phone: EmulatedPhone | None = None) -> JSONResponse:
        media = self.state.media.get(media_id)
        if d360_phone is None:
            phone = self.state.phones.get(media.phone_number_id) if media else None
            problem = self._bearer_problem(request, phone, entry)
            if problem is not None:
                return problem
        elif media is not None and media.phone_number_id != d360_phone.phone_number_id:
            media = None
        if media is None:
            return self._unknown(entry, media_id, "delete")
        del self.state.media[media_id]
        self.state.requests.add(**entry, http_status=200, media_id=media_id)
        return JSONResponse({"success": True})

    def download(self, request: Request, entry: dict[str, Any]) -> Response:
        params = request.query_params
        media_id, digest = params.get("mid", ""), params.get("hash", "")
        try:
            expires = int(params.get("ext", "0"))
        except ValueError:
            expires = 0
        media = self.state.media.get(media_id)
        if media is None or not self.state.media_url_valid(media_id, expires, digest):
            _status, body = error_body(100, message="(#100) The media URL is invalid or has expired.",
                                      details="Retrieve the media again for a fresh URL.")
            self.state.requests.add(**entry, http_status=404, error_code=100)
            return JSONResponse(body, status_code=404)
        phone = self.state.phones.get(media.phone_number_id)
        key = request.headers.get("d360-api-key")
        if key:
            if phone is None or not phone.d360_api_key or not _same(key, phone.d360_api_key):
                return self._error(entry, 190, message="Invalid D360-API-KEY")
        else:
            problem = self._bearer_problem(request, phone, entry)
            if problem is not None:
                return problem
        self.state.requests.add(**entry, http_status=200, media_id=media_id, size=len(media.content))
        return Response(media.content, media_type=media.mime_type)

    # --- admin --------------------------------------------------------------------------------

    def inject_inbound(self, values: dict[str, Any]) -> dict[str, Any]:
        phone = self.state.phones.get(str(values.get("phone_number_id") or ""))
        if phone is None:
            raise ValueError("unknown phone_number_id")
        sender = digits(values.get("from"))
        if len(sender) < 6:
            raise ValueError("'from' must be a phone number")
        message = dict(values.get("message") or {})
        kind = str(message.get("type") or values.get("type") or "text")
        message.setdefault("from", sender)
        message.setdefault("id", new_wamid())
        message.setdefault("timestamp", str(int(time.time())))
        message["type"] = kind
        if kind not in message:
            if kind == "text":
                message["text"] = {"body": str(values.get("text") or "")}
            elif kind in MEDIA_TYPES and values.get("media_base64") is not None:
                try:
                    content = base64.b64decode(str(values["media_base64"]), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ValueError("media_base64 is not base64") from exc
                mime = str(values.get("mime_type") or "application/octet-stream")
                media = self.state.store_media(phone.phone_number_id, content, mime)
                obj: dict[str, Any] = {"id": media.id, "mime_type": mime, "sha256": media.sha256_b64}
                if values.get("caption"):
                    obj["caption"] = str(values["caption"])
                if values.get("filename"):
                    obj["filename"] = str(values["filename"])
                message[kind] = obj
            else:
                raise ValueError(f"give the '{kind}' object (or text / media_base64)")
        self.state.set_written(phone.phone_number_id, sender, True)
        value = {"contacts": [{"profile": {"name": str(values.get("name") or "Emulated User")}, "wa_id": sender}],
                 "messages": [message]}
        delivery = self.sender.schedule(envelope(phone, value), delay_s=float(values.get("delay_ms") or 0) / 1000,
                                        kind="inbound", summary={"wamid": message["id"], "from": sender})
        return {"message": message, "delivery": delivery}


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _usage_header(phone: EmulatedPhone, minutes: int) -> dict[str, str]:
    usage = {phone.waba_id: [{"type": "whatsapp", "call_count": 100, "total_cputime": 100, "total_time": 100,
                              "estimated_time_to_regain_access": minutes}]}
    return {"X-Business-Use-Case-Usage": json.dumps(usage)}


def _entry(request: Request, profile: str, operation: str, phone_number_id: str | None = None) -> dict[str, Any]:
    return {"method": request.method, "path": request.url.path, "profile": profile, "operation": operation,
            "phone_number_id": phone_number_id}


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    return data


def create_app(state: EmulatorState, validator: MessageValidator | None = None) -> FastAPI:
    """The emulator as an ASGI app (the CLI serves it with uvicorn)."""
    emulator = Emulator(state, validator)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        emulator.sender.start()
        yield
        await emulator.sender.stop()

    app = FastAPI(title="bisnesgpt Cloud API emulator", lifespan=lifespan, docs_url="/_emulator/docs",
                  openapi_url="/_emulator/openapi.json", redoc_url=None)
    app.state.emulator = emulator
    _admin_routes(app, emulator)

    def version_problem(request: Request, version: str, entry: dict[str, Any]) -> JSONResponse | None:
        if VERSION_RE.match(version):
            return None
        return emulator._error(entry, 2500, message=f"Unknown path components: {request.url.path}")

    @app.api_route(ATTACHMENTS_PATH, methods=["GET"], include_in_schema=False)
    @app.api_route(ATTACHMENTS_PATH.rstrip("/"), methods=["GET"], include_in_schema=False)
    async def download(request: Request) -> Response:
        return emulator.download(request, _entry(request, "any", "media_download"))

    # --- 360dialog profile: D360-API-KEY, no version, no phone id ----------------------------------
    @app.post("/messages")
    async def d360_send(request: Request) -> Response:
        entry = _entry(request, "d360", "send")
        phone, problem = emulator._d360_phone(request, entry)
        return problem or await emulator.send(request, phone, entry)  # type: ignore[arg-type]

    @app.post("/media")
    async def d360_upload(request: Request) -> Response:
        entry = _entry(request, "d360", "media_upload")
        phone, problem = emulator._d360_phone(request, entry)
        return problem or await emulator.upload(request, phone, entry)  # type: ignore[arg-type]

    @app.get("/{media_id}")
    async def d360_retrieve(request: Request, media_id: str) -> Response:
        entry = _entry(request, "d360", "media_retrieve")
        phone, problem = emulator._d360_phone(request, entry)
        return problem or emulator.retrieve(request, media_id, entry, d360_phone=phone)

    @app.delete("/{media_id}")
    async def d360_delete(request: Request, media_id: str) -> Response:
        entry = _entry(request, "d360", "media_delete")
        phone, problem = emulator._d360_phone(request, entry)
        return problem or emulator.delete(request, media_id, entry, d360_phone=phone)

    # --- Meta profile: Bearer token, /{version}/{object id}/… --------------------------------------
    @app.post("/{version}/{object_id}/messages")
    async def meta_send(request: Request, version: str, object_id: str) -> Response:
        entry = _entry(request, "meta", "send", object_id)
        problem = version_problem(request, version, entry)
        if problem is not None:
            return problem
        phone = state.phones.get(object_id)
        problem = emulator._bearer_problem(request, phone, entry)
        if problem is not None:
            return problem
        if phone is None:
            return emulator._unknown(entry, object_id, "post")
        return await emulator.send(request, phone, entry)

    @app.post("/{version}/{object_id}/media")
    async def meta_upload(request: Request, version: str, object_id: str) -> Response:
        entry = _entry(request, "meta", "media_upload", object_id)
        problem = version_problem(request, version, entry)
        if problem is not None:
            return problem
        phone = state.phones.get(object_id)
        problem = emulator._bearer_problem(request, phone, entry)
        if problem is not None:
            return problem
        if phone is None:
            return emulator._unknown(entry, object_id, "post")
        return await emulator.upload(request, phone, entry)

    @app.get("/{version}/{object_id}")
    async def meta_retrieve(request: Request, version: str, object_id: str) -> Response:
        entry = _entry(request, "meta", "media_retrieve", request.query_params.get("phone_number_id"))
        return version_problem(request, version, entry) or emulator.retrieve(request, object_id, entry)

    @app.delete("/{version}/{object_id}")
    async def meta_delete(request: Request, version: str, object_id: str) -> Response:
        entry = _entry(request, "meta", "media_delete")
        return version_problem(request, version, entry) or emulator.delete(request, object_id, entry)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown_path(request: Request, path: str) -> Response:
        entry = _entry(request, "any", "unknown")
        return emulator._error(entry, 2500, message=f"Unknown path components: /{path}")

    return app


def _admin_routes(app: FastAPI, emulator: Emulator) -> None:  # noqa: PLR0915 - one route table
    state = emulator.state

    def bad(detail: str) -> JSONResponse:
        return JSONResponse({"error": detail}, status_code=400)

    @app.get("/_emulator/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "phones": len(state.phones), "pendingWebhooks": emulator.sender.pending}

    @app.get("/_emulator/phones")
    async def list_phones() -> list[dict[str, Any]]:
        return [phone.public() for phone in state.phones.values()]

    @app.post("/_emulator/phones")
    async def add_phone(request: Request) -> Response:
        try:
            values = await _json_body(request)
            phone_id = str(values.pop("phone_number_id"))
            if not phone_id.isdigit():
                return bad("phone_number_id must be digits")
            return JSONResponse(state.add_phone(phone_id, **values).public())
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid phone: {exc}")

    @app.post("/_emulator/templates")
    async def add_template(request: Request) -> Response:
        try:
            values = await _json_body(request)
            languages = values.get("languages")
            state.templates[str(values["name"])] = set(map(str, languages)) if languages else None
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid template: {exc}")
        return JSONResponse({"name": values["name"], "languages": languages})

    @app.get("/_emulator/templates")
    async def list_templates() -> dict[str, Any]:
        return {name: sorted(langs) if langs else None for name, langs in state.templates.items()}

    @app.post("/_emulator/contacts")
    async def set_contact(request: Request) -> Response:
        try:
            values = await _json_body(request)
            wa_id = digits(values["wa_id"])
            state.set_written(values.get("phone_number_id"), wa_id, bool(values.get("written", True)))
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid contact: {exc}")
        return JSONResponse({"wa_id": wa_id, "written": bool(values.get("written", True))})

    @app.get("/_emulator/rules")
    async def list_rules() -> list[dict[str, Any]]:
        return [asdict(rule) for rule in state.rules]

    @app.post("/_emulator/rules")
    async def add_rule(request: Request) -> Response:
        try:
            return JSONResponse(asdict(state.add_rule(await _json_body(request))))
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid rule: {exc}")

    @app.delete("/_emulator/rules")
    async def clear_rules() -> dict[str, Any]:
        count = len(state.rules)
        state.rules.clear()
        return {"deleted": count}

    @app.get("/_emulator/config")
    async def get_config() -> dict[str, Any]:
        return {"webhook": state.webhook.public(), "default_messages_per_second": state.default_messages_per_second,
                "media_url_ttl": state.media_url_ttl}

    @app.patch("/_emulator/config")
    async def patch_config(request: Request) -> Response:
        try:
            values = await _json_body(request)
            state.webhook.update(values.get("webhook") or {})
            if "media_url_ttl" in values:
                state.media_url_ttl = float(values["media_url_ttl"])
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid config: {exc}")
        return JSONResponse({"webhook": state.webhook.public(), "media_url_ttl": state.media_url_ttl})

    @app.post("/_emulator/inbound")
    async def inbound(request: Request) -> Response:
        try:
            return JSONResponse(emulator.inject_inbound(await _json_body(request)))
        except (KeyError, ValueError, TypeError) as exc:
            return bad(f"invalid inbound message: {exc}")

    @app.post("/_emulator/webhooks")
    async def raw_webhook(request: Request) -> Response:
        try:
            values = await _json_body(request)
            payload = values["payload"]
            if not isinstance(payload, dict):
                return bad("payload must be an object")
        except (KeyError, ValueError) as exc:
            return bad(f"invalid webhook: {exc}")
        seq = emulator.sender.schedule(payload, delay_s=float(values.get("delay_ms") or 0) / 1000, kind="raw",
                                       summary={"note": str(values.get("note") or "")})
        return JSONResponse({"delivery": seq})

    @app.get("/_emulator/webhooks")
    async def list_webhooks(since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        return emulator.webhook_record.query(since=since, limit=limit)

    @app.get("/_emulator/requests")
    async def list_requests(since: int = 0, operation: str | None = None, phone_number_id: str | None = None,
                            limit: int | None = None, body: bool = False) -> list[dict[str, Any]]:
        return state.requests.query(since=since, operation=operation, phone_number_id=phone_number_id, limit=limit,
                                    with_body=body)

    @app.delete("/_emulator/requests")
    async def clear_requests() -> dict[str, Any]:
        state.requests.clear()
        emulator.webhook_record.clear()
        return {"cleared": True}

    @app.get("/_emulator/stats")
    async def stats() -> dict[str, Any]:
        by_code: dict[str, int] = {}
        for entry in state.requests.entries:
            key = str(entry.get("error_code") or entry.get("http_status"))
            by_code[key] = by_code.get(key, 0) + 1
        return {"requests": len(state.requests.entries), "byCode": by_code,
                "webhooks": len(emulator.webhook_record.entries), "pendingWebhooks": emulator.sender.pending}
