"""``POST …/messages``: mark-as-read, or a send checked, limited and accepted, then its status webhooks.

The checks run in Meta's order: the body against the message-type schema, the recipient,
injected ``sync`` error rules, throughput (130429), pair rate (131056), unknown templates
(132001). What Meta reports only later — the 24-hour window (131047), media that was never
uploaded to this phone or is of a type the message type cannot carry (131053), injected
``webhook`` rules — is accepted and then fails by webhook. A send by media id logs the
media's size and sha256 (``media_sha256``): what the recipient's phone receives.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from fastapi import Request
from fastapi.responses import JSONResponse

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.meta_emulator.context import Answers, RequestContext
from bisnesgpt.sandbox.meta_emulator.media import fits_kind
from bisnesgpt.sandbox.meta_emulator.record import Created
from bisnesgpt.sandbox.meta_emulator.spec import MessageValidator
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState, ErrorRule, digits, new_wamid
from bisnesgpt.sandbox.meta_emulator.webhooks import WebhookSender

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


class SentContact(TypedDict):
    """Whom a send went to: the ``to`` as given and the WhatsApp id it resolved to."""

    input: JsonValue
    wa_id: str


class SentMessage(TypedDict):
    """The accepted message (templates also say ``message_status: accepted``)."""

    id: str
    message_status: NotRequired[str]


class SendAnswer(TypedDict):
    """The Cloud API's success body for a send."""

    messaging_product: str
    contacts: list[SentContact]
    messages: list[SentMessage]


@dataclass(eq=False)
class Messages:
    """Answers ``POST …/messages`` for a phone whose credentials were already checked."""

    state: EmulatorState
    validator: MessageValidator
    sender: WebhookSender
    answers: Answers

    async def send(self, request: Request, phone: EmulatedPhone, ctx: RequestContext) -> JSONResponse:
        """Mark-as-read or a send: Graph's answer, and for an accepted send its status webhooks."""
        delay = self.state.request_delay_s()
        if delay > 0:
            await asyncio.sleep(delay)  # the path's latency (and jitter) before "Meta" sees the request
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.answers.error(ctx, 100, details="The request body must be a JSON object.")
        ctx.body = body
        if self.validator.is_mark_as_read(body):
            return self._mark_as_read(body, ctx)
        filled = self.validator.with_defaults(body)
        kind = ctx.type = str(filled["type"])
        ctx.to = filled.get("to")
        wa_id = self._recipient(filled, ctx)
        if isinstance(wa_id, JSONResponse):
            return wa_id
        return self._limited(phone, filled, kind, wa_id, ctx) or self._accept(phone, filled, kind, wa_id, ctx)

    def _mark_as_read(self, body: JsonObject, ctx: RequestContext) -> JSONResponse:
        ctx.operation = "mark_read"
        problem = self.validator.validate(body)
        if problem is not None:
            return self.answers.error(ctx, 100, details=problem.detail)
        return self.answers.ok(ctx, {"success": True}, message_id=body.get("message_id"))

    def _recipient(self, filled: JsonObject, ctx: RequestContext) -> str | JSONResponse:
        """The recipient's WhatsApp id (noted in ``ctx``) once the body is valid; else the 100 answer."""
        problem = self.validator.validate(filled)
        if problem is not None:
            return self.answers.error(ctx, 100, details=problem.detail)
        if filled.get("messaging_product") != "whatsapp":
            return self.answers.error(ctx, 100, details="messaging_product must be 'whatsapp'.")
        individual = filled["recipient_type"] == "individual"
        wa_id = ctx.wa_id = digits(filled["to"]) if individual else str(filled["to"])
        if individual and len(wa_id) < 6:
            return self.answers.error(ctx, 100, details=f"to: '{filled['to']}' is not a valid WhatsApp phone number.")
        return wa_id

    def _limited(self, phone: EmulatedPhone, filled: JsonObject, kind: str, wa_id: str,
                 ctx: RequestContext) -> JSONResponse | None:
        """The synchronous refusal of a valid send, if any: a ``sync`` rule, the rate limits, the template."""
        rule = ctx.rule = self.state.match_rule(phone.phone_number_id, wa_id, kind)
        if rule is not None and rule.mode == "sync":
            headers = _usage_header(phone, rule.usage_minutes) if rule.usage_minutes else None
            return self.answers.error(ctx, rule.code, details=rule.details, headers=headers)
        now = time.monotonic()
        if not phone.take_throughput_token(now):
            return self.answers.error(ctx, 130429)
        if not phone.take_pair_slot(wa_id, now):
            return self.answers.error(ctx, 131056)
        if kind == "template":
            template = filled["template"]
            template = template if isinstance(template, dict) else {}
            language = template.get("language")
            name = str(template.get("name"))
            code = str(language.get("code") if isinstance(language, dict) else None)
            if not self.state.template_known(name, code):
                return self.answers.error(ctx, 132001, details=f"template name ({name}) does not exist in {code}")
        return None

    def _accept(self, phone: EmulatedPhone, filled: JsonObject, kind: str, wa_id: str,
                ctx: RequestContext) -> JSONResponse:
        failed_code, failed_details = self._async_failure(phone, wa_id, kind, filled, ctx.rule)
        wamid = new_wamid()
        message: SentMessage = {"id": wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        answer: SendAnswer = {"messaging_product": "whatsapp", "contacts": [{"input": filled["to"], "wa_id": wa_id}],
                              "messages": [message]}
        created: Created = {"wamid": wamid, "failed_code": failed_code}
        if failed_code is None:
            created.update(self._sent_media(phone, kind, filled))
        response = self.answers.ok(ctx, answer, **created)
        template = filled.get("template") if kind == "template" else None
        billing = self.state.billing(phone.phone_number_id, wa_id,
                                     str(template.get("name")) if isinstance(template, dict) else None,
                                     now=time.time())
        self.sender.schedule_ladder(phone, wamid, wa_id, failed_code=failed_code, failed_details=failed_details,
                                    billing=billing)
        return response

    def _async_failure(self, phone: EmulatedPhone, wa_id: str, kind: str, body: JsonObject,
                       rule: ErrorRule | None) -> tuple[int | None, str | None]:
        """Failures Meta reports by webhook after accepting the request."""
        if rule is not None:
            return rule.code, rule.details
        if kind != "template" and not self.state.has_written(phone.phone_number_id, wa_id):
            return 131047, None
        media = body.get(kind) if kind in MEDIA_TYPES else None
        if isinstance(media, dict) and "id" in media:
            stored = self.state.media.get(str(media["id"]))
            if stored is None or stored.phone_number_id != phone.phone_number_id:
                return 131053, f"Media id {media['id']} was not uploaded to this phone number."
            if not fits_kind(kind, stored.mime_type):
                return 131053, f"Media id {media['id']} is {stored.mime_type}, which cannot be sent as {kind}."
        return None, None

    def _sent_media(self, phone: EmulatedPhone, kind: str, body: JsonObject) -> Created:
        """What a send by media id hands the recipient: the media, its size and its bytes' sha256."""
        media = body.get(kind) if kind in MEDIA_TYPES else None
        stored = self.state.media.get(str(media["id"])) if isinstance(media, dict) and "id" in media else None
        if stored is None or stored.phone_number_id != phone.phone_number_id:
            return {}
        return {"media_id": stored.id, "size": len(stored.content), "media_sha256": stored.sha256_hex}



def _usage_header(phone: EmulatedPhone, minutes: int) -> dict[str, str]:
    """``X-Business-Use-Case-Usage`` saying when the business regains access (Meta's back-off hint)."""
    usage = {phone.waba_id: [{"type": "whatsapp", "call_count": 100, "total_cputime": 100, "total_time": 100,
                              "estimated_time_to_regain_access": minutes}]}
    return {"X-Business-Use-Case-Usage": json.dumps(usage)}
