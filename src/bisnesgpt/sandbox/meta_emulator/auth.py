"""Who may call the Cloud API routes: a Bearer token (``meta`` profile) or a D360-API-KEY (``d360``).

A phone registered without a token accepts any Bearer token, as a development stand-in
should; a wrong token or key is Graph's error 190, logged like every other answer.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse

from bisnesgpt.sandbox.meta_emulator.context import Answers, RequestContext
from bisnesgpt.sandbox.meta_emulator.state import EmulatedPhone, EmulatorState


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two credentials."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(eq=False)
class Gate:
    """Checks a request's credentials against the phone it addresses."""

    state: EmulatorState
    answers: Answers

    def bearer_refusal(self, request: Request, phone: EmulatedPhone | None, ctx: RequestContext) -> JSONResponse | None:
        """The 190 answer if the Bearer token is missing or is not ``phone``'s; None if it may go on."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return self.answers.error(ctx, 190, message="An access token is required to request this resource.")
        if phone is not None and phone.access_token and not same(token, phone.access_token):
            return self.answers.error(ctx, 190, message="Error validating access token: the token is invalid.")
        return None

    def d360_phone(self, request: Request, ctx: RequestContext) -> EmulatedPhone | JSONResponse:
        """The phone whose D360-API-KEY the request carries (noted in ``ctx``), or the 190 answer."""
        key = request.headers.get("d360-api-key", "")
        phone = self.state.phone_by_d360_key(key) if key else None
        if phone is None:
            return self.answers.error(ctx, 190, message="Invalid D360-API-KEY")
        ctx.phone_number_id = phone.phone_number_id
        return phone

    def download_refusal(self, request: Request, phone: EmulatedPhone | None,
                         ctx: RequestContext) -> JSONResponse | None:
        """Downloads take either profile's credentials: the phone's D360 key if one is sent, else its token."""
        key = request.headers.get("d360-api-key")
        if not key:
            return self.bearer_refusal(request, phone, ctx)
        if phone is None or not phone.d360_api_key or not same(key, phone.d360_api_key):
            return self.answers.error(ctx, 190, message="Invalid D360-API-KEY")
        return None
