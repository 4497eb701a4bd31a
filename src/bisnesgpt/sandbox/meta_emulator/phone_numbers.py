"""The phone number object: ``GET /{version}/{phone_number_id}[?fields=…]`` (Meta's getPhoneNumberById)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse

from bisnesgpt.core.jsontypes import JsonObject
from bisnesgpt.sandbox.meta_emulator.context import Answers, RequestContext
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone

# What Meta answers without ?fields=.
PHONE_NUMBER_DEFAULT_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating")


def phone_number_fields(phone: EmulatedPhone) -> JsonObject:
    """Every field of Meta's PhoneNumberInfo the emulator knows, by name (``?fields=`` picks from these)."""
    return {
        "id": phone.phone_number_id, "display_phone_number": phone.display_phone_number,
        "verified_name": phone.verified_name, "quality_rating": phone.quality_rating,
        "code_verification_status": phone.code_verification_status, "name_status": phone.name_status,
        "status": phone.status, "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"},
        "messaging_limit_tier": "TIER_1K", "account_mode": "LIVE", "is_official_business_account": False,
    }


@dataclass(eq=False)
class PhoneNumbers:
    """Answers the phone number object: the default fields, or those named in ``?fields=``."""

    answers: Answers

    def answer(self, request: Request, ctx: RequestContext, phone: EmulatedPhone) -> JSONResponse:
        """The object for ``phone``; a field Meta does not have is error 100, as Graph answers it."""
        ctx.operation = "phone_number"
        ctx.phone_number_id = phone.phone_number_id
        known = phone_number_fields(phone)
        asked = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]
        unknown = [f for f in asked if f not in known]
        if unknown:
            return self.answers.error(ctx, 100, message=f"(#100) Tried accessing nonexisting field ({unknown[0]}) on "
                                                        "node type (WhatsAppBusinessPhoneNumber)")
        fields = asked or list(PHONE_NUMBER_DEFAULT_FIELDS)
        # Graph always includes the id.
        return self.answers.ok(ctx, {**{f: known[f] for f in fields}, "id": phone.phone_number_id})
