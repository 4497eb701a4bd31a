"""The emulator's admin API, ``/_emulator/…``: phones, templates, contacts, error rules, webhook
behaviour, injected inbound messages and raw webhooks, and the logs (table in the README).

A body that is not a JSON object, or a setting that does not convert, is a 400
``{"error": "invalid <what>: <why>"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.http import AN_OBJECT, OBJECTS
from bisnesgpt.sandbox.jsonvalues import as_float, as_strings
from bisnesgpt.sandbox.meta_emulator.state import digits

if TYPE_CHECKING:
    from bisnesgpt.sandbox.meta_emulator.app import Emulator


def bad(detail: str) -> JSONResponse:
    """The admin API's 400."""
    return JSONResponse({"error": detail}, status_code=400)


async def json_object(request: Request) -> JsonObject:
    """The request's body, which must be a JSON object (TypeError otherwise)."""
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    return data


async def apply_body(request: Request, what: str, apply: Callable[[JsonObject], Response]) -> Response:
    """``apply`` the request's JSON object; a bad body or value is the 400 naming ``what``."""
    try:
        return apply(await json_object(request))
    except (KeyError, ValueError, TypeError) as exc:
        return bad(f"invalid {what}: {exc}")


def admin_router(emulator: Emulator) -> APIRouter:
    """The ``/_emulator`` routes over ``emulator``'s state."""
    router = APIRouter(prefix="/_emulator")
    state = emulator.state

    @router.get("/health", response_model=AN_OBJECT)
    async def health() -> Response:
        return JSONResponse({"status": "ok", "phones": len(state.phones), "pendingWebhooks": emulator.sender.pending})

    @router.get("/phones", response_model=OBJECTS)
    async def list_phones() -> Response:
        return JSONResponse([phone.public() for phone in state.phones.values()])

    def apply_phone(values: JsonObject) -> Response:
        phone_id = str(values.pop("phone_number_id"))
        if not phone_id.isdigit():
            return bad("phone_number_id must be digits")
        return JSONResponse(state.add_phone(phone_id, **values).public())

    @router.post("/phones")
    async def add_phone(request: Request) -> Response:
        return await apply_body(request, "phone", apply_phone)

    def apply_template(values: JsonObject) -> Response:
        languages = values.get("languages")
        category = state.add_template(str(values["name"]), set(as_strings(languages)) if languages else None,
                                      str(values.get("category") or "marketing"))
        return JSONResponse({"name": values["name"], "languages": languages, "category": category})

    @router.post("/templates")
    async def add_template(request: Request) -> Response:
        return await apply_body(request, "template", apply_template)

    @router.get("/templates", response_model=AN_OBJECT)
    async def list_templates() -> Response:
        return JSONResponse({name: sorted(langs) if langs else None for name, langs in state.templates.items()})

    def apply_contact(values: JsonObject) -> Response:
        wa_id, written = digits(values["wa_id"]), bool(values.get("written", True))
        phone_number_id = values.get("phone_number_id")
        state.set_written(None if phone_number_id is None else str(phone_number_id), wa_id, written)
        return JSONResponse({"wa_id": wa_id, "written": written})

    @router.post("/contacts")
    async def set_contact(request: Request) -> Response:
        return await apply_body(request, "contact", apply_contact)

    @router.get("/rules", response_model=OBJECTS)
    async def list_rules() -> Response:
        return JSONResponse([asdict(rule) for rule in state.rules])

    @router.post("/rules")
    async def add_rule(request: Request) -> Response:
        return await apply_body(request, "rule", lambda values: JSONResponse(asdict(state.add_rule(values))))

    @router.delete("/rules", response_model=AN_OBJECT)
    async def clear_rules() -> Response:
        count = len(state.rules)
        state.rules.clear()
        return JSONResponse({"deleted": count})

    @router.get("/config", response_model=AN_OBJECT)
    async def get_config() -> Response:
        return JSONResponse({"webhook": state.webhook.public(),
                             "default_messages_per_second": state.default_messages_per_second,
                             "media_url_ttl": state.media_url_ttl, "latency_ms": state.latency_ms,
                             "latency_jitter_ms": state.latency_jitter_ms})

    def apply_config(values: JsonObject) -> Response:
        webhook = values.get("webhook") or {}
        if not isinstance(webhook, dict):
            raise TypeError("webhook must be an object")
        state.webhook.update(webhook)
        for name in ("media_url_ttl", "latency_ms", "latency_jitter_ms"):
            if name in values:  # a negative TTL makes every URL expired at once (tests use it)
                setattr(state, name, as_float(values[name]) if name == "media_url_ttl"
                        else max(0.0, as_float(values[name])))
        return JSONResponse({"webhook": state.webhook.public(), "media_url_ttl": state.media_url_ttl,
                             "latency_ms": state.latency_ms, "latency_jitter_ms": state.latency_jitter_ms})

    @router.patch("/config")
    async def patch_config(request: Request) -> Response:
        return await apply_body(request, "config", apply_config)

    @router.post("/inbound")
    async def inbound(request: Request) -> Response:
        return await apply_body(request, "inbound message",
                                lambda values: JSONResponse(emulator.inbound.inject(values)))

    def apply_webhook(values: JsonObject) -> Response:
        payload = values["payload"]
        if not isinstance(payload, dict):
            return bad("payload must be an object")
        seq = emulator.sender.schedule(payload, delay_s=as_float(values.get("delay_ms") or 0) / 1000, kind="raw",
                                       summary={"note": str(values.get("note") or "")})
        return JSONResponse({"delivery": seq})

    @router.post("/webhooks")
    async def raw_webhook(request: Request) -> Response:
        return await apply_body(request, "webhook", apply_webhook)

    @router.get("/webhooks", response_model=OBJECTS)
    async def list_webhooks(since: int = 0, limit: int | None = None) -> Response:
        return JSONResponse(emulator.webhook_record.query(since=since, limit=limit))

    @router.get("/requests", response_model=OBJECTS)
    async def list_requests(since: int = 0, operation: str | None = None, phone_number_id: str | None = None,
                            limit: int | None = None, body: bool = False) -> Response:
        return JSONResponse(state.requests.select(since=since, operation=operation, phone_number_id=phone_number_id,
                                                  limit=limit, with_body=body))

    @router.delete("/requests", response_model=AN_OBJECT)
    async def clear_requests() -> Response:
        state.requests.clear()
        emulator.webhook_record.clear()
        return JSONResponse({"cleared": True})

    @router.get("/stats", response_model=AN_OBJECT)
    async def stats() -> Response:
        by_code: dict[str, int] = {}
        for entry in state.requests.entries:
            key = str(entry.get("error_code") or entry.get("http_status"))
            by_code[key] = by_code.get(key, 0) + 1
        return JSONResponse({"requests": len(state.requests.entries), "byCode": by_code,
                             "webhooks": len(emulator.webhook_record.entries),
                             "pendingWebhooks": emulator.sender.pending})

    return router
