"""The phone card's test message: a text sent from the dashboard to a number, as any send.

The message goes through ``messaging.sending.SendService`` exactly as ``POST /api/v2/messages/
text/…`` does: the company's send quota, routing by the phone's connection type, the 24-hour
window of the Cloud API, stored before the answer (202: stored and queued), then sent by the
engine; its ``source`` is ``dashboard``. The page then follows the message by its id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bisnesgpt.api.rate_limits import api_limits
from bisnesgpt.dashboard.auth import Caller, dashboard_caller
from bisnesgpt.messaging import drafts
from bisnesgpt.messaging.addressing import normalize_recipient
from bisnesgpt.messaging.router import MessageRouter
from bisnesgpt.messaging.sending import SendAnswer, SendRequest, SendService
from bisnesgpt.processes.context import ProcessContext

Who = Annotated[Caller, Depends(dashboard_caller)]
CompanyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
PhoneIndex = Annotated[int, Path(ge=0, le=1000)]


class TestMessage(BaseModel):
    """Body of a test message: the number (international format) and the text."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"to": "+60123456789", "text": "Test from the dashboard"}]})
    to: str = Field(min_length=3, max_length=64, description="the number (or chat id) to send to")
    text: str = Field(min_length=1, max_length=4096)


def send_service(ctx: ProcessContext) -> SendService:
    """The same accepting service the send routes use (its own routing cache, kept fresh by pub/sub)."""
    router = MessageRouter(ctx.db, ctx.settings, ctx.coordinator, ttl_seconds=ctx.settings.router_cache_ttl)
    return SendService(ctx.db, router, ctx.queues, idempotency_ttl=timedelta(hours=ctx.settings.idempotency_ttl_hours))


def trial_send_routes(router: APIRouter, sender: SendService) -> None:
    """``POST /dashboard/api/phones/{company}/{index}/test-message`` on ``router``."""

    @router.post("/phones/{company_id}/{phone_index}/test-message", status_code=202, response_model=None,
                 summary="Send a test text from this phone (stored and queued like any send; 202 with its id)")
    async def test_message(request: Request, who: Who, company_id: CompanyId, phone_index: PhoneIndex,
                           body: TestMessage) -> JSONResponse:
        who.principal.require_company(company_id, "phone")
        draft = drafts.text_draft(normalize_recipient(body.to, field="to"), body.text,
                                  request={"to": body.to, "text": body.text, "by": who.label})
        await api_limits(request).take_send(company_id)  # 429 over the company's quota, nothing stored
        outcome = await sender.send(SendRequest(company_id, phone_index, draft, source="dashboard"))
        answer: SendAnswer = outcome.body
        return JSONResponse(dict(answer), status_code=outcome.status_code)
