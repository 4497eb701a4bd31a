"""Who owns which number: a WABA's phone numbers (``GET /{version}/{waba_id}/phone_numbers``) and
360dialog's ``GET /health_status``, which a gateway asks before it accepts a claimed phone.

A token (or a 360dialog key) owns the phones registered with it; a phone registered without
a token is readable with any token (the development default the demo and the tests rely on).
Unknown objects are Graph's 100/33, a wrong token 190 — as Meta answers them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.meta_emulator.auth import same
from bisnesgpt.sandbox.meta_emulator.context import Answers, RequestContext
from bisnesgpt.sandbox.meta_emulator.phone_numbers import PHONE_NUMBER_DEFAULT_FIELDS, phone_number_fields
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState


def readable_with(phone: EmulatedPhone, token: str) -> bool:
    """Whether ``token`` may read ``phone`` (any token may read a phone registered without one)."""
    return phone.access_token is None or same(token, phone.access_token)


@dataclass(eq=False)
class Accounts:
    """Answers the ownership questions: a WABA's numbers, a 360dialog key's number."""

    state: EmulatorState
    answers: Answers

    def waba_phone_numbers(self, ctx: RequestContext, waba_id: str, token: str) -> JSONResponse:
        """The WABA's phone numbers ``token`` may read (Meta's WhatsAppBusinessAccountPhoneNumbersConnection);
        a WABA with none of them is an object the caller may not use (100/33)."""
        phones = [p for p in self.state.phones.values() if p.waba_id == waba_id and readable_with(p, token)]
        if not phones:
            return self.answers.unknown(ctx, waba_id, "get")
        data: list[JsonValue] = []
        for phone in phones:
            known = phone_number_fields(phone)
            data.append({f: known[f] for f in PHONE_NUMBER_DEFAULT_FIELDS})
        first, last = phones[0].phone_number_id, phones[-1].phone_number_id
        body: JsonObject = {"data": data, "paging": {"cursors": {"before": first, "after": last}}}
        return self.answers.ok(ctx, body)

    def d360_health_status(self, ctx: RequestContext, phone: EmulatedPhone) -> JSONResponse:
        """360dialog's ``/health_status`` for the key's number: its phone number and WABA entities."""
        status = "AVAILABLE" if phone.status == "CONNECTED" else "BLOCKED"
        body: JsonObject = {"health_status": {"can_send_message": status, "entities": [
            {"entity_type": "PHONE_NUMBER", "id": phone.phone_number_id, "can_send_message": status},
            {"entity_type": "WABA", "id": phone.waba_id, "can_send_message": status},
        ]}}
        return self.answers.ok(ctx, body)


def bearer_token(request: Request) -> str:
    """The request's Bearer token ('' when there is none)."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""
