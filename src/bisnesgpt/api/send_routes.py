"""Send routes: the original ``/api/v2/messages/*`` and ``/api/messages/react``, and
the generic ``POST /api/v1/messages``.

Every send answers ``202 {success, messageId, status: "queued", process, queueName}`` once
the message is committed (``messaging.sending``), or with ``?wait=`` the outcome (200) if
the message reached a final state in time. ``Idempotency-Key`` makes a send exactly-once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from bisnesgpt.api.auth import CurrentPrincipal, Principal, current_principal
from bisnesgpt.api.rate_limits import api_limits
from bisnesgpt.api.schemas import send as models
from bisnesgpt.api.schemas import send_v2 as v2_models
from bisnesgpt.api.schemas.common import CompanyPath, JsonObject, problem_responses
from bisnesgpt.api.send_express import CHAT_ID_MAX, IDEMPOTENCY_KEY_MAX, Express, common_text, express_route
from bisnesgpt.api.uploaded_media import UploadedMedia
from bisnesgpt.messaging import drafts
from bisnesgpt.messaging.addressing import STATUS_CHAT, Recipient, invalid, normalize_recipient
from bisnesgpt.messaging.drafts import Draft
from bisnesgpt.messaging.idempotency import IdempotencyKey, fingerprint, validate_key
from bisnesgpt.messaging.sending import MAX_WAIT_SECONDS, SendRequest, SendService

ChatPath = Annotated[str, Path(min_length=1, max_length=CHAT_ID_MAX,
                               description="Phone number with country code or chat id", examples=["60123456789@c.us"])]
MessagePath = Annotated[str, Path(min_length=1, max_length=256,
                                  description="Our messageId or the provider's message id",
                                  examples=["01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"])]
WaitQuery = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS,
                                   description="Hold the answer up to this many seconds until the message is sent "
                                               "or failed (200); 202 if it is still on its way")]
IdempotencyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=IDEMPOTENCY_KEY_MAX,
    description="Makes the send exactly-once per company: a retry with the same key and body gets the "
                "original answer; a different body 422; while the first is in flight 409. Kept ≥ 24 h.",
    examples=["order-4711-confirmation"])]

# FastAPI's own type for a route's ``responses`` (they hold models, not only JSON).
SEND_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored and queued (the row is committed before this answer)",
          "content": {"application/json": {"example": models.SEND_ACCEPTED_EXAMPLE}}},
    200: {"model": models.SendResponse, "description": "With ?wait=: the message reached a final state in time",
          "content": {"application/json": {"example": models.SEND_DONE_EXAMPLE}}},
    **problem_responses(400, 401, 404, 409, 422, 429, 503),
}
DraftOf = Callable[[Recipient, JsonObject], Draft]


def _ex(summary: str, value: JsonObject) -> Example:
    return {"summary": summary, "value": value}


@dataclass(frozen=True)
class SendCall:
    """What a send names besides its body: the caller, ``?wait=`` and ``Idempotency-Key`` (and, in the
    subclasses, the path), read by one dependency per route shape so that errors keep their order."""

    request: Request
    principal: Principal
    wait: float
    idempotency_key: str | None

    async def dispatch(self, sender: SendService, company_id: str, phone_index: int, draft: Draft, *,
                       explicit: bool, ordered: bool | None = None) -> JSONResponse:
        """Store and queue the draft (exactly once with an Idempotency-Key); 202, or 200 with ``?wait=``."""
        self.principal.require_phone(phone_index)
        key = await self._idempotency(company_id)
        await api_limits(self.request).take_send(company_id)  # 429 over the company's quota, nothing stored
        outcome = await sender.send(SendRequest(company_id, phone_index, draft, phone_index_explicit=explicit,
                                                idempotency=key, wait_seconds=self.wait, ordered=ordered))
        headers = {"Location": f"/api/v1/messages/{outcome.body['messageId']}"}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)

    async def _idempotency(self, company_id: str) -> IdempotencyKey | None:
        if self.idempotency_key is None:
            return None
        request = self.request
        raw = await request.body()
        body = json.loads(raw) if raw else None
        return IdempotencyKey(company_id, validate_key(self.idempotency_key),
                              fingerprint(request.method, request.url.path, body), request.method, request.url.path)


@dataclass(frozen=True)
class ChatSend(SendCall):
    """A v2 send to the chat in the path, for the company in the path."""

    company_id: str
    chat_id: str


@dataclass(frozen=True)
class MessageSend(ChatSend):
    """A v2 edit or delete of the message in the path."""

    message_id: str


@dataclass(frozen=True)
class ReactionSend(SendCall):
    """A reaction to the message in the path, for the company in the path."""

    company_id: str
    message_id: str


async def send_call(request: Request, principal: CurrentPrincipal, wait: WaitQuery = 0,
                    idempotency_key: IdempotencyHeader = None) -> SendCall:
    """FastAPI dependency: the caller, query and header of any send."""
    return SendCall(request, principal, wait, idempotency_key)


async def chat_send(request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
                    wait: WaitQuery = 0, idempotency_key: IdempotencyHeader = None) -> ChatSend:
    """FastAPI dependency: the path, query and header of a v2 send to a chat."""
    return ChatSend(request, principal, wait, idempotency_key, company_id=companyId, chat_id=chatId)


async def message_send(request: Request, principal: CurrentPrincipal, companyId: CompanyPath, chatId: ChatPath,
                       messageId: MessagePath, wait: WaitQuery = 0,
                       idempotency_key: IdempotencyHeader = None) -> MessageSend:
    """FastAPI dependency: the path, query and header of a v2 edit or delete."""
    return MessageSend(request, principal, wait, idempotency_key, company_id=companyId, chat_id=chatId,
                       message_id=messageId)


async def reaction_send(request: Request, principal: CurrentPrincipal, companyId: CompanyPath,
                        messageId: MessagePath, wait: WaitQuery = 0,
                        idempotency_key: IdempotencyHeader = None) -> ReactionSend:
    """FastAPI dependency: the path, query and header of a reaction."""
    return ReactionSend(request, principal, wait, idempotency_key, company_id=companyId, message_id=messageId)


AnySend = Annotated[SendCall, Depends(send_call)]
ToChat = Annotated[ChatSend, Depends(chat_send)]
ToMessage = Annotated[MessageSend, Depends(message_send)]
ToReact = Annotated[ReactionSend, Depends(reaction_send)]


def _request(body: BaseModel) -> JsonObject:
    """The body as the client sent it (stored with the message), without the fields left out."""
    return body.model_dump(mode="json", exclude_none=True)


def _v1_body(message: models.V1Message, recipient: Recipient, reply_to: str | None, request: JsonObject) -> Draft:
    if isinstance(message, models.TextMessage):
        return drafts.text_draft(recipient, message.text.body, preview_url=message.text.preview_url,
                                 reply_to=reply_to, request=request, mentions=message.text.mentions)
    if isinstance(message, models.ImageMessage | models.VideoMessage | models.AudioMessage | models.StickerMessage
                  | models.DocumentMessage):
        media = getattr(message, message.type)
        return drafts.media_draft(message.type, recipient, link=media.link, media_id=media.id,
                                  caption=getattr(media, "caption", None), filename=getattr(media, "filename", None),
                                  reply_to=reply_to, request=request)
    if isinstance(message, models.LocationMessage | models.PollMessage | models.ContactsMessage):
        return _shared_body(message, recipient, reply_to, request)
    if isinstance(message, models.TemplateMessage):
        template = message.template
        return drafts.template_draft(recipient, template.name, template.language.code, template.components,
                                     reply_to=reply_to, request=request)
    assert isinstance(message, models.InteractiveMessage)
    interactive = message.interactive
    return Draft("interactive", interactive.model_dump(exclude_none=True), recipient, reply_to=reply_to,
                 content=interactive.body.text if interactive.body else None, request=request)


def _shared_body(message: models.LocationMessage | models.PollMessage | models.ContactsMessage,
                 recipient: Recipient, reply_to: str | None, request: JsonObject) -> Draft:
    if isinstance(message, models.LocationMessage):
        location = message.location
        return Draft("location", location.model_dump(exclude_none=True), recipient, reply_to=reply_to,
                     content=location.name or f"{location.latitude},{location.longitude}", request=request)
    if isinstance(message, models.PollMessage):
        poll = message.poll
        return Draft("poll", poll.model_dump(), recipient, reply_to=reply_to, content=poll.name, request=request)
    contacts = [c.model_dump(exclude_none=True) for c in message.contacts]
    return Draft("contacts", contacts, recipient, reply_to=reply_to,
                 content=", ".join(c.name.formatted_name for c in message.contacts), request=request)


def v1_draft(message: models.V1Message) -> Draft:
    """The generic body → a draft (recipient normalised, reply and target kept as given, pacing hints kept)."""
    draft = _v1_draft(message)
    pacing: JsonObject = {k: v for k, v in (("simulateTyping", message.simulateTyping),
                                            ("delayMs", message.delayMs)) if v is not None}
    return dataclasses.replace(draft, pacing=pacing) if pacing else draft


def _v1_draft(message: models.V1Message) -> Draft:
    if isinstance(message, models.StatusMessage):
        status = message.status
        body = status.model_dump(mode="json", exclude_none=True)
        if status.recipients:
            body["recipients"] = list(dict.fromkeys(r.lstrip("+") for r in status.recipients))
        return Draft("status", body, Recipient(STATUS_CHAT, "status", False), request=_request(message),
                     content=status.text or status.caption)
    recipient = normalize_recipient(message.to, field="to")
    if message.recipient_type is not None and message.recipient_type != recipient.recipient_type:
        raise invalid("recipient_type", f"is {message.recipient_type!r} but 'to' names a "
                                        f"{'group' if recipient.is_group else 'person'}")
    request = _request(message)
    if isinstance(message, models.ReactionMessage):
        return drafts.reaction_draft(recipient, message.reaction.message_id, message.reaction.emoji, request=request)
    if isinstance(message, models.EditMessage):
        return drafts.edit_draft(recipient, message.edit.message_id, message.edit.text.body, request=request)
    if isinstance(message, models.DeleteMessage):
        return drafts.delete_draft(recipient, message.delete.message_id,
                                   for_everyone=message.delete.for_everyone, request=request)
    if isinstance(message, models.ForwardMessage):
        return drafts.forward_draft(recipient, message.forward.message_id, request=request)
    return _v1_body(message, recipient, message.context.message_id if message.context else None, request)


V1_EXAMPLES: dict[str, Example] = {
    "text": _ex("Text", {"to": "60123456789", "type": "text", "text": {"body": "Hello!"}}),
    "reply": _ex("Text reply", {"to": "60123456789", "type": "text", "text": {"body": "Yes"},
                                "context": {"message_id": "wamid.HBgLNjAxMjM0NTY3ODkVAgARGBI"}}),
    "image": _ex("Image by link on phone 1", {"to": "+60 12-345 6789", "type": "image", "phoneIndex": 1,
                                              "image": {"link": "https://example.com/p.jpg", "caption": "Menu"}}),
    "document": _ex("Document", {"to": "60123456789", "type": "document",
                                 "document": {"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf"}}),
    "uploaded": _ex("Document uploaded first (POST /api/v1/media), sent by its id", {
        "to": "60123456789", "type": "document", "document": {"id": "med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f"}}),
    "template": _ex("Template", {"to": "60123456789", "type": "template", "template": {
        "name": "order_update", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}]}}),
    "reaction": _ex("Reaction", {"to": "60123456789", "type": "reaction",
                                 "reaction": {"message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f", "emoji": "👍"}}),
    "location": _ex("Location", {"to": "60123456789", "type": "location",
                                 "location": {"latitude": 3.139, "longitude": 101.6869, "name": "KL"}}),
    "group": _ex("Text to a group (WhatsApp Web)", {"to": "120363012345678901@g.us", "type": "text",
                                                    "text": {"body": "Hi all"}}),
    "mention": _ex("Text with a mention, in a group (WhatsApp Web)", {
        "to": "120363012345678901@g.us", "type": "text",
        "text": {"body": "@60123456789 your order is ready", "mentions": ["60123456789"]}}),
    "contacts": _ex("Contact cards (two)", {"to": "60123456789", "type": "contacts", "contacts": [
        {"name": {"formatted_name": "Aisha Rahman", "first_name": "Aisha", "last_name": "Rahman"},
         "phones": [{"phone": "+60 12-345 6789", "wa_id": "60123456789", "type": "CELL"}]},
        {"name": {"formatted_name": "Acme Support"}, "phones": [{"phone": "+60 3-1234 5678", "type": "WORK"}],
         "emails": [{"email": "help@acme.example", "type": "WORK"}]}]}),
    "poll": _ex("Poll (WhatsApp Web)", {"to": "60123456789", "type": "poll", "poll": {
        "name": "Delivery slot?", "options": ["Morning", "Afternoon", "Evening"], "selectable_count": 1}}),
    "sticker": _ex("Sticker (webp)", {"to": "60123456789", "type": "sticker",
                                      "sticker": {"link": "https://example.com/thanks.webp"}}),
    "status_text": _ex("Status post: text on a colour, to two contacts (WhatsApp Web)", {
        "to": "status@broadcast", "type": "status", "status": {
            "text": "We are open on Sunday!", "background_color": "#25D366", "recipients": ["60123456789",
                                                                                        "60198765432"]}}),
    "status_image": _ex("Status post: an image, to all contacts (WhatsApp Web)", {
        "to": "status@broadcast", "type": "status", "status": {"image": {"link": "https://example.com/sale.jpg"},
                                                               "caption": "Sale this week"}}),
    "forward": _ex("Forward a message sent or received earlier, by its messageId (WhatsApp Web)", {
        "to": "60198765432", "type": "forward", "forward": {"message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"}}),
    "preview": _ex("Text with a link preview", {"to": "60123456789", "type": "text",
                                                "text": {"body": "Our menu: https://example.com/menu",
                                                         "preview_url": True}}),
    "no_preview": _ex("Text without a link preview", {"to": "60123456789", "type": "text",
                                                       "text": {"body": "https://example.com", "preview_url": False}}),
}


def build(sender: SendService, uploads: UploadedMedia) -> APIRouter:
    """The send routes (v2 per type, react, edit, delete; v1 in the Cloud API shape); ``api.admission`` gates them.

    ``uploads`` settles v1 media naming an uploaded ``med_…`` id (404 when not the company's).
    """
    router = APIRouter(tags=["send"])

    def send_route(method: Literal["POST", "PUT", "DELETE"], path: str, summary: str,
                   express: Express | None = None) -> Callable[[DecoratedCallable], DecoratedCallable]:
        def add(endpoint: DecoratedCallable) -> DecoratedCallable:
            router.add_api_route(path, endpoint, methods=[method], summary=summary, status_code=202,
                                 response_model=models.SendResponse, responses=SEND_RESPONSES,
                                 route_class_override=express_route(express) if express is not None else None)
            return endpoint
        return add

    async def to_chat(send: ChatSend, body: v2_models.V2Base, draft_of: DraftOf) -> JSONResponse:
        send.principal.require_company(send.company_id)
        draft = draft_of(normalize_recipient(send.chat_id), _request(body))
        return await send.dispatch(sender, send.company_id, body.phoneIndex, draft, explicit=True,
                                   ordered=body.ordered)

    async def text_to_chat(send: ChatSend, body: v2_models.V2Text) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.text_draft(
            to, body.message, reply_to=body.quotedMessageId, request=request))

    async def express_text(request: Request) -> JSONResponse | None:
        common = await common_text(request, v2_models.V2Text)
        if common is None:
            return None
        principal = await current_principal(request)
        send = ChatSend(request, principal, 0.0, common.idempotency_key, company_id=common.company_id,
                        chat_id=common.chat_id)
        return await text_to_chat(send, common.body)

    @send_route("POST", "/api/v2/messages/text/{companyId}/{chatId}", "Send a text message", express=express_text)
    async def send_text(send: ToChat, body: Annotated[v2_models.V2Text, Body(openapi_examples={
        "text": _ex("Text", {"message": "Hello from bisnesgpt", "phoneIndex": 0, "userName": "Aisyah"}),
        "reply": _ex("Reply", {"message": "Yes", "quotedMessageId": "true_60123456789@c.us_3EB0C767D26A1D4E"}),
    })]) -> JSONResponse:
        return await text_to_chat(send, body)

    @send_route("POST", "/api/v2/messages/image/{companyId}/{chatId}", "Send an image by URL")
    async def send_image(send: ToChat, body: Annotated[v2_models.V2Image, Body(openapi_examples={
        "image": _ex("Image", {"imageUrl": "https://example.com/menu.jpg", "caption": "Today's menu"})})],
    ) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.media_draft(
            "image", to, link=body.imageUrl, caption=body.caption, reply_to=body.quotedMessageId, request=request))

    @send_route("POST", "/api/v2/messages/video/{companyId}/{chatId}", "Send a video by URL")
    async def send_video(send: ToChat, body: Annotated[v2_models.V2Video, Body(openapi_examples={
        "video": _ex("Video", {"videoUrl": "https://example.com/demo.mp4", "caption": "Demo", "phoneIndex": 0})})],
    ) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.media_draft(
            "video", to, link=body.videoUrl, caption=body.caption, reply_to=body.quotedMessageId, request=request))

    @send_route("POST", "/api/v2/messages/audio/{companyId}/{chatId}", "Send audio (voice note) by URL")
    async def send_audio(send: ToChat, body: Annotated[v2_models.V2Audio, Body(openapi_examples={
        "audio": _ex("Audio", {"audioUrl": "https://example.com/note.ogg", "phoneIndex": 0})})],
    ) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.media_draft(
            "audio", to, link=body.audioUrl, reply_to=body.quotedMessageId, request=request))

    @send_route("POST", "/api/v2/messages/document/{companyId}/{chatId}", "Send a document by URL")
    async def send_document(send: ToChat, body: Annotated[v2_models.V2Document, Body(openapi_examples={
        "document": _ex("Document", {"documentUrl": "https://example.com/invoice.pdf",
                                     "filename": "invoice-4711.pdf", "caption": "Your invoice"})})],
    ) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.media_draft(
            "document", to, link=body.documentUrl, caption=body.caption, filename=body.effective_filename,
            mime_type=body.mimeType, reply_to=body.quotedMessageId, request=request))

    @send_route("POST", "/api/v2/messages/template/{companyId}/{chatId}", "Send an approved template")
    async def send_template(send: ToChat, body: Annotated[v2_models.V2Template, Body(openapi_examples={
        "template": _ex("Template", {"templateName": "order_update", "templateLang": "en_US",
                                     "templateComponents": [{"type": "body", "parameters": [
                                         {"type": "text", "text": "4711"}]}], "phoneIndex": 1})})],
    ) -> JSONResponse:
        return await to_chat(send, body, lambda to, request: drafts.template_draft(
            to, body.templateName, body.templateLang, body.templateComponents, reply_to=body.quotedMessageId,
            request=request))

    @send_route("PUT", "/api/v2/messages/{companyId}/{chatId}/{messageId}", "Edit a sent message's text")
    async def edit_message(send: ToMessage, body: Annotated[v2_models.V2Edit, Body(openapi_examples={
        "edit": _ex("Edit", {"newMessage": "Corrected text", "phoneIndex": 0})})]) -> JSONResponse:
        send.principal.require_company(send.company_id)
        draft = drafts.edit_draft(normalize_recipient(send.chat_id), send.message_id, body.text,
                                  request=_request(body))
        return await send.dispatch(sender, send.company_id, body.phoneIndex, draft,
                                   explicit="phoneIndex" in body.model_fields_set, ordered=body.ordered)

    @send_route("DELETE", "/api/v2/messages/{companyId}/{chatId}/{messageId}", "Delete a sent message")
    async def delete_message(send: ToMessage, body: Annotated[v2_models.V2Delete | None, Body(openapi_examples={
        "everyone": _ex("Delete for everyone", {"deleteForEveryone": True, "phoneIndex": 0})})] = None,
    ) -> JSONResponse:
        send.principal.require_company(send.company_id)
        body = body or v2_models.V2Delete()
        recipient = normalize_recipient(send.chat_id)
        if body.messageId is not None and body.messageId != send.message_id:
            raise invalid("messageId", "differs from the messageId in the path")
        if body.chatId is not None and normalize_recipient(body.chatId).chat_id != recipient.chat_id:
            raise invalid("chatId", "differs from the chatId in the path")
        draft = drafts.delete_draft(recipient, send.message_id, for_everyone=body.deleteForEveryone,
                                    request=_request(body))
        return await send.dispatch(sender, send.company_id, body.phoneIndex, draft,
                                   explicit="phoneIndex" in body.model_fields_set, ordered=body.ordered)

    @send_route("POST", "/api/messages/react/{companyId}/{messageId}", "React to a message with an emoji")
    async def react(send: ToReact, body: Annotated[v2_models.V2React, Body(openapi_examples={
        "react": _ex("React", {"reaction": "👍", "phoneIndex": 0}),
        "remove": _ex("Remove a reaction", {"reaction": ""}),
    })]) -> JSONResponse:
        send.principal.require_company(send.company_id)
        recipient: Recipient | None = normalize_recipient(body.chatId) if body.chatId else None
        draft = drafts.reaction_draft(recipient, send.message_id, body.effective_emoji, request=_request(body))
        return await send.dispatch(sender, send.company_id, body.phoneIndex, draft,
                                   explicit="phoneIndex" in body.model_fields_set, ordered=body.ordered)

    @send_route("POST", "/api/v1/messages", "Send any message type (Cloud API message shape)")
    async def send_v1(send: AnySend, body: Annotated[models.V1Message, Body(openapi_examples=V1_EXAMPLES)],
                      ) -> JSONResponse:
        company_id = send.principal.company_required(body.companyId)
        draft = await uploads.settle(company_id, v1_draft(body))
        return await send.dispatch(sender, company_id, body.phoneIndex, draft,
                                   explicit="phoneIndex" in body.model_fields_set or draft.target is None,
                                   ordered=body.ordered)

    return router
