"""Reading messages: ``GET /api/v1/messages/{id}`` and ``GET /api/v1/messages`` (a page)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from bisnesgpt.api.auth import CurrentPrincipal
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, MAX_PHONE_INDEX, problem_responses
from bisnesgpt.api.schemas.messages import (
    MESSAGE_DETAIL_EXAMPLE,
    MESSAGE_EXAMPLE,
    MessageDetail,
    MessagePage,
    MessageView,
)
from bisnesgpt.core.errors import NotFound
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging import store, views
from bisnesgpt.messaging.addressing import normalize_recipient
from bisnesgpt.messaging.edits import NO_CHANGES, changes_of
from bisnesgpt.messaging.targets import find_message

CompanyQuery = Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN,
                                           description="The company; required with an operator key for lists",
                                           examples=["acme"])]
Status = Literal["accepted", "queued", "sending", "sent", "delivered", "read", "failed", "cancelled"]


def build(db: Database) -> APIRouter:
    """Message reading routes: one message with its history, and filtered pages; each message as
    the edits and the delete that went out for it left it."""
    router = APIRouter(tags=["messages"])

    @router.get(
        "/api/v1/messages/{messageId}", response_model=MessageDetail, summary="A message: state, history, error",
        responses={200: {"content": {"application/json": {"example": MESSAGE_DETAIL_EXAMPLE}}},
                   **problem_responses(401, 404, 422, 503)},
    )
    async def get_message(
        principal: CurrentPrincipal,
        messageId: Annotated[str, Path(min_length=1, max_length=256, description="Our messageId (or the provider's)",
                                       examples=["01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"])],
        companyId: CompanyQuery = None,
    ) -> MessageDetail:
        company_id = principal.company_scope(companyId)
        async with db.connection() as conn:
            if company_id is None:  # an operator without a company: our ids are unique
                record = await store.load_message(conn, messageId, None)
            else:
                record = await find_message(conn, company_id, messageId)
            if record is None:
                raise NotFound(f"message {messageId!r} not found")
            principal.require_phone(record.phone_index)
            history = await views.history(conn, record)
            changes = await changes_of(conn, [record])
        return MessageDetail.of(record, changes.get(record.id, NO_CHANGES), history=history)

    @router.get(
        "/api/v1/messages", response_model=MessagePage, summary="A company's messages, newest first (filtered)",
        responses={200: {"content": {"application/json": {"example": {
            "data": [MESSAGE_EXAMPLE], "nextCursor": "bToxMjM0"}}}},
                   **problem_responses(401, 404, 422, 503)},
    )
    async def list_messages(
        principal: CurrentPrincipal,
        companyId: CompanyQuery = None,
        chatId: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this chat",
                                            examples=["60123456789@c.us"])] = None,
        phoneIndex: Annotated[int | None, Query(ge=0, le=MAX_PHONE_INDEX)] = None,
        status: Annotated[Status | None, Query(description="Only messages in this state")] = None,
        direction: Annotated[Literal["outbound", "inbound"] | None, Query()] = None,
        type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="Message type, e.g. text")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=64, description="nextCursor of the previous page")] = None,
    ) -> MessagePage:
        company_id = principal.company_required(companyId)
        where = views.MessageFilter(
            company_id=company_id,
            chat_id=normalize_recipient(chatId, field="chatId").chat_id if chatId else None,
            phone_index=phoneIndex, status=status, direction=direction, message_type=type,
            before_pk=views.decode_cursor(cursor) if cursor else None, limit=limit,
        )
        async with db.connection() as conn:
            records, next_pk = await views.page(conn, where)
            changes = await changes_of(conn, records)
        return MessagePage(data=[MessageView.of(r, changes.get(r.id, NO_CHANGES)) for r in records],
                           nextCursor=views.encode_cursor(next_pk) if next_pk is not None else None)

    return router
