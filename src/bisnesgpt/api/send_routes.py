"""Send routes: the original ``/api/v2/messages/*`` and ``/api/messages/react``, and
the generic ``POST /api/v1/messages``.

Every send answers ``202 {success, messageId, status: "queued", process, queueName}`` once
the message is committed (``messaging.sending``), or with ``?wait=`` the outcome (200) if
the message reached a final state in time. ``Idempotency-Key`` makes a send exactly-once.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bisnesgpt.api.auth import CurrentPrincipal, Principal
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, problem_responses
from bisnesgpt.api.schemas.send import (
    SEND_ACCEPTED_EXAMPLE,
    SEND_DONE_EXAMPLE,
    AudioMessage,
    ContactsMessage,
    DeleteMessage,
    DocumentMessage,
    EditMessage,
    ImageMessage,
    InteractiveMessage,
    LocationMessage,
    ReactionMessage,
    SendResponse,
    StickerMessage,
    TemplateMessage,
    TextMessage,
    V1Message,
    V2Audio,
    V2Delete,
    V2Document,
    V2Edit,
    V2Image,
    V2React,
    V2Template,
    V2Text,
    V2Video,
    VideoMessage,
)
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.messaging import drafts
from bisnesgpt.messaging.addressing import Recipient, invalid, normalize_recipient
from bisnesgpt.messaging.drafts import Draft
from bisnesgpt.messaging.idempotency import IdempotencyKey, fingerprint, validate_key
from bisnesgpt.messaging.sending import MAX_WAIT_SECONDS, SendRequest, SendService

CompanyPath = Annotated[str, Path(pattern=COMPANY_ID_PATTERN, description="The company (tenant) id",
                                  examples=["acme"])]
ChatPath = Annotated[str, Path(min_length=1, max_length=64, description="Phone number with country code or chat id",
                               examples=["60123456789@c.us"])]
MessagePath = Annotated[str, Path(min_length=1, max_length=256,
                                  description="Our messageId or the provider's message id",
                                  examples=["01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"])]
WaitQuery = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS,
                                   description="Hold the answer up to this many seconds until the message is sent "
                                               "or failed (200); 202 if it is still on its way")]
IdempotencyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255,
    description="Makes the send exactly-once per company: a retry with the same key and body gets the "
                "original answer; a different body 422; while the first is in flight 409. Kept ≥ 24 h.",
    examples=["order-4711-confirmation"])]

SEND_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored and queued (the row is committed before this answer)",
          "content": {"application/json": {"example": SEND_ACCEPTED_EXAMPLE}}},
    200: {"model": SendResponse, "description": "With ?wait=: the message reached a final state in time",
          "content": {"application/json": {"example": SEND_DONE_EXAMPLE}}},
    **problem_responses(400, 401, 404, 409, 422, 503),
}


def _ex(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


async def _idempotency(request: Request, company_id: str, raw_key: str | None) -> IdempotencyKey | None:
    if raw_key is None:
        return None
    raw = await request.body()
    body = json.loads(raw) if raw else None
    return IdempotencyKey(company_id, validate_key(raw_key), fingerprint(request.method, request.url.path, body),
                          request.method, request.url.path)


async def _dispatch(sender: SendService, request: Request, *, company_id: str, phone_index: int, explicit: bool,
                    draft: Draft, raw_key: str | None, wait: float) -> JSONResponse:
    key = await _idempotency(request, company_id, raw_key)
    outcome = await sender.send(SendRequest(company_id, phone_index, draft, phone_index_explicit=explicit,
                                                     idempotency=key, wait_seconds=wait))
    headers = {"Location": f"/api/v1/messages/{outcome.body['messageId']}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


def _request(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_none=True)


def _v1_company(principal: Principal, company_id: str | None) -> str:
    if company_id is None:
        if principal.company_id is None:
            raise ValidationFailed("companyId is required with an operator key",
                                   errors=[{"field": "companyId", "message": "required with an operator key",
                                            "type": "missing"}])
        return principal.company_id
    principal.require_company(company_id)
    return company_id


def _v1_body(message: V1Message, recipient: Recipient, reply_to: str | None, request: dict[str, Any]) -> Draft:
    if isinstance(message, TextMessage):
        return drafts.text_draft(recipient, message.text.body, preview_url=message.text.preview_url,
                                 reply_to=reply_to, request=request)
    if isinstance(message, ImageMessage | VideoMessage | AudioMessage | StickerMessage | DocumentMessage):
        media = getattr(message, message.type)
        return drafts.media_draft(message.type, recipient, link=media.link, media_id=media.id,
                                  caption=getattr(media, "caption", None), filename=getattr(media, "filename", None),
                                  reply_to=reply_to, request=request)
    if isinstance(message, TemplateMessage):
        template = message.template
        return drafts.template_draft(recipient, template.name, template.language.code, template.components,
                                     reply_to=reply_to, request=request)
    if isinstance(message, LocationMessage):
        location = message.location
        return Draft("location", location.model_dump(exclude_none=True), recipient, reply_to=reply_to,
                     content=location.name or f"{location.latitude},{location.longitude}", request=request)
    if isinstance(message, ContactsMessage):
        contacts = [c.model_dump(exclude_none=True) for c in message.contacts]
        return Draft("contacts", contacts, recipient, reply_to=reply_to,
                     content=", ".join(c.name.formatted_name for c in message.contacts), request=request)
    assert isinstance(message, InteractiveMessage)
    interactive = message.interactive
    return Draft("interactive", interactive.model_dump(exclude_none=True), recipient, reply_to=reply_to,
                 content=interactive.body.text if interactive.body else None, request=request)


def v1_draft(message: V1Message) -> Draft:
    """The generic body → a draft (recipient normalised, reply and target kept as given)."""
    recipient = normalize_recipient(message.to, field="to")
    if message.recipient_type is not None and message.recipient_type != recipient.recipient_type:
        raise invalid("recipient_type", f"is {message.recipient_type!r} but 'to' names a "
                                        f"{'group' if recipient.is_group else 'person'}")
    request = _request(message)
    if isinstance(message, ReactionMessage):
        return drafts.reaction_draft(recipient, message.reaction.message_id, message.reaction.emoji, request=request)
    if isinstance(message, EditMessage):
        return drafts.edit_draft(recipient, message.edit.message_id, message.edit.text.body, request=request)
    if isinstance(message, DeleteMessage):
        return drafts.delete_draft(recipient, message.delete.message_id,
                                   for_everyone=message.delete.for_everyone, request=request)
    return _v1_body(message, recipient, message.context.message_id if message.context else None, request)


V1_EXAMPLES = {
    "text": _ex("Text", {"to": "60123456789", "type": "text", "text": {"body": "Hello!"}}),
    "reply": _ex("Text reply", {"to": "60123456789", "type": "text", "text": {"body": "Yes"},
                                "context": {"message_id": "wamid.HBgLNjAxMjM0NTY3ODkVAgARGBI"}}),
    "image": _ex("Image by link on phone 1", {"to": "+60 12-345 6789", "type": "image", "phoneIndex": 1,
                                              "image": {"link": "https://example.com/p.jpg", "caption": "Menu"}}),
    "document": _ex("Document", {"to": "60123456789", "type": "document",
                                 "document": {"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf"}}),
    "template": _ex("Template", {"to": "60123456789", "type": "template", "template": {
        "name": "order_update", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}]}}),
    "reaction": _ex("Reaction", {"to": "60123456789", "type": "reaction",
                                 "reaction": {"message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f", "emoji": "👍"}}),
    "location": _ex("Location", {"to": "60123456789", "type": "location",
                                 "location": {"latitude": 3.139, "longitude": 101.6869, "name": "KL"}}),
    "group": _ex("Text to a group (WhatsApp Web)", {"to": "120363012345678901@g.us", "type": "text",
                                                    "text": {"body": "Hi all"}}),
}


def build(sender: SendService) -> APIRouter:
    """The send routes (v2 per type, react, edit, delete; v1 in the Cloud API shape)."""
    router = APIRouter(tags=["send"])
    common: dict[str, Any] = {"status_code": 202, "response_model": SendResponse, "responses": SEND_RESPONSES}

    @router.post("/api/v2/messages/text/{companyId}/{chatId}", summary="Send a text message", **common)
    async def send_text(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Text, Body(openapi_examples={
            "text": _ex("Text", {"message": "Hello from bisnesgpt", "phoneIndex": 0, "userName": "Aisyah"}),
            "reply": _ex("Reply", {"message": "Yes", "quotedMessageId": "true_60123456789@c.us_3EB0C767D26A1D4E"}),
        })],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.text_draft(normalize_recipient(chatId), body.message, reply_to=body.quotedMessageId,
                                  request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.post("/api/v2/messages/image/{companyId}/{chatId}", summary="Send an image by URL", **common)
    async def send_image(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Image, Body(openapi_examples={
            "image": _ex("Image", {"imageUrl": "https://example.com/menu.jpg", "caption": "Today's menu"})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.media_draft("image", normalize_recipient(chatId), link=body.imageUrl, caption=body.caption,
                                   reply_to=body.quotedMessageId, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.post("/api/v2/messages/video/{companyId}/{chatId}", summary="Send a video by URL", **common)
    async def send_video(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Video, Body(openapi_examples={
            "video": _ex("Video", {"videoUrl": "https://example.com/demo.mp4", "caption": "Demo", "phoneIndex": 0})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.media_draft("video", normalize_recipient(chatId), link=body.videoUrl, caption=body.caption,
                                   reply_to=body.quotedMessageId, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.post("/api/v2/messages/audio/{companyId}/{chatId}", summary="Send audio (voice note) by URL", **common)
    async def send_audio(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Audio, Body(openapi_examples={
            "audio": _ex("Audio", {"audioUrl": "https://example.com/note.ogg", "phoneIndex": 0})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.media_draft("audio", normalize_recipient(chatId), link=body.audioUrl,
                                   reply_to=body.quotedMessageId, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.post("/api/v2/messages/document/{companyId}/{chatId}", summary="Send a document by URL", **common)
    async def send_document(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Document, Body(openapi_examples={
            "document": _ex("Document", {"documentUrl": "https://example.com/invoice.pdf",
                                         "filename": "invoice-4711.pdf", "caption": "Your invoice"})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.media_draft("document", normalize_recipient(chatId), link=body.documentUrl,
                                   caption=body.caption, filename=body.effective_filename, mime_type=body.mimeType,
                                   reply_to=body.quotedMessageId, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.post("/api/v2/messages/template/{companyId}/{chatId}", summary="Send an approved template", **common)
    async def send_template(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        body: Annotated[V2Template, Body(openapi_examples={
            "template": _ex("Template", {"templateName": "order_update", "templateLang": "en_US",
                                         "templateComponents": [{"type": "body", "parameters": [
                                             {"type": "text", "text": "4711"}]}], "phoneIndex": 1})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.template_draft(normalize_recipient(chatId), body.templateName, body.templateLang,
                                      body.templateComponents, reply_to=body.quotedMessageId,
                                      request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex, explicit=True,
                               draft=draft, raw_key=idempotency_key, wait=wait)

    @router.put("/api/v2/messages/{companyId}/{chatId}/{messageId}", summary="Edit a sent message's text",
                **common)
    async def edit_message(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        messageId: MessagePath,
        body: Annotated[V2Edit, Body(openapi_examples={
            "edit": _ex("Edit", {"newMessage": "Corrected text", "phoneIndex": 0})})],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        draft = drafts.edit_draft(normalize_recipient(chatId), messageId, body.text, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex,
                               explicit="phoneIndex" in body.model_fields_set, draft=draft, raw_key=idempotency_key,
                               wait=wait)

    @router.delete("/api/v2/messages/{companyId}/{chatId}/{messageId}", summary="Delete a sent message",
                   **common)
    async def delete_message(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
        messageId: MessagePath,
        body: Annotated[V2Delete | None, Body(openapi_examples={
            "everyone": _ex("Delete for everyone", {"deleteForEveryone": True, "phoneIndex": 0})})] = None,
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        body = body or V2Delete()
        recipient = normalize_recipient(chatId)
        if body.messageId is not None and body.messageId != messageId:
            raise invalid("messageId", "differs from the messageId in the path")
        if body.chatId is not None and normalize_recipient(body.chatId).chat_id != recipient.chat_id:
            raise invalid("chatId", "differs from the chatId in the path")
        draft = drafts.delete_draft(recipient, messageId, for_everyone=body.deleteForEveryone,
                                    request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex,
                               explicit="phoneIndex" in body.model_fields_set, draft=draft, raw_key=idempotency_key,
                               wait=wait)

    @router.post("/api/messages/react/{companyId}/{messageId}", summary="React to a message with an emoji",
                 **common)
    async def react(
        request: Request, principal: CurrentPrincipal, companyId: CompanyPath, messageId: MessagePath,
        body: Annotated[V2React, Body(openapi_examples={
            "react": _ex("React", {"reaction": "👍", "phoneIndex": 0}),
            "remove": _ex("Remove a reaction", {"reaction": ""}),
        })],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        principal.require_company(companyId)
        recipient: Recipient | None = normalize_recipient(body.chatId) if body.chatId else None
        draft = drafts.reaction_draft(recipient, messageId, body.effective_emoji, request=_request(body))
        return await _dispatch(sender, request, company_id=companyId, phone_index=body.phoneIndex,
                               explicit="phoneIndex" in body.model_fields_set, draft=draft, raw_key=idempotency_key,
                               wait=wait)

    @router.post("/api/v1/messages", summary="Send any message type (Cloud API message shape)", **common)
    async def send_v1(
        request: Request, principal: CurrentPrincipal,
        body: Annotated[V1Message, Body(openapi_examples=V1_EXAMPLES)],
        wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        company_id = _v1_company(principal, body.companyId)
        draft = v1_draft(body)
        return await _dispatch(sender, request, company_id=company_id, phone_index=body.phoneIndex,
                               explicit="phoneIndex" in body.model_fields_set or draft.target is None, draft=draft,
                               raw_key=idempotency_key, wait=wait)

    return router
