"""Conversations: ``/api/v1/chats`` (list, messages, read, typing) and ``/api/v1/contacts`` (list, check).

Everything is scoped to the caller's company and one phone (``phoneIndex``); another
company's chat looks like a chat without messages, and another company's phone is a 404.
Marking a chat read resets its unread count and tells the provider: the Cloud API's
mark-as-read of the newest inbound message (blue ticks). A typing indicator on the Cloud
API is that same call with ``typing_indicator`` (it shows until the reply, at most 25 s);
it has no "recording" state and no on-WhatsApp check, so those answer a clear 422 there.
On WhatsApp-Web phones the session that owns the phone does the provider's part, through
a ``chat`` session command (``session_commands.owner_answer``): read receipts for the
chat's unread messages, chat presence ("typing…", "recording audio…", paused) and the
on-WhatsApp check of numbers. A session that is not connected is a 409, no answer in time
a 503; the chat's unread count is reset only after the receipts went out.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from bisnesgpt.api.auth import CurrentPrincipal, Principal
from bisnesgpt.api.schemas.common import COMPANY_ID_PATTERN, MAX_PHONE_INDEX, problem_responses
from bisnesgpt.api.session_commands import owner_answer
from bisnesgpt.config import Settings
from bisnesgpt.conversations import store
from bisnesgpt.conversations.store import Cursor, NotOnThisEngine
from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.core.errors import NotFound
from bisnesgpt.core.jsontypes import JsonValue
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.client import CloudApiClient
from bisnesgpt.engines.meta.profiles import D360_CONNECTION_TYPE, META_CONNECTION_TYPES, credentials_for_phone
from bisnesgpt.engines.wwebjs.commands import GROUP_OP_TIMEOUT_S
from bisnesgpt.engines.wwebjs.driver import SessionKey, TypingState
from bisnesgpt.messaging.addressing import normalize_phone, normalize_recipient
from bisnesgpt.phones.store import PhoneConfig, get_phone
from bisnesgpt.processes.context import ProcessContext

PhoneQuery = Annotated[int, Query(ge=0, le=MAX_PHONE_INDEX, description="The phone (its index)", examples=[0])]
CompanyQuery = Annotated[str | None, Query(pattern=COMPANY_ID_PATTERN,
                                           description="The company (required with an operator key)",
                                           examples=["acme"])]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="Page size")]
ChatPath = Annotated[str, Path(min_length=1, max_length=64, description="A chat id or phone number",
                               examples=["60123456789@c.us"])]
CLOUD_TYPES = META_CONNECTION_TYPES | {D360_CONNECTION_TYPE}
# The API's typing states → WhatsApp Web's chat presence.
WEB_PRESENCE: dict[str, TypingState] = {"typing": "composing", "recording": "recording", "paused": "paused"}
# The API waits a little longer than the owner waits for WhatsApp, so the owner's answer arrives.
WAIT_S = GROUP_OP_TIMEOUT_S + 5


class LastMessage(TypedDict):
    """A chat's last message."""

    message_id: str
    direction: str
    status: str
    type: str
    preview: str | None
    at: str


class ChatJson(TypedDict):
    """One chat of the list."""

    chat_id: str
    number: str | None
    lid: str | None
    contact_name: str | None
    unread_count: int
    last_message: LastMessage


class ChatPage(TypedDict):
    """A page of chats."""

    data: list[ChatJson]
    nextCursor: str | None


class ChatMessageJson(TypedDict):
    """One message of a chat."""

    message_id: str
    external_id: str | None
    direction: str
    status: str
    type: str
    content: str | None
    media: dict[str, str | None] | None
    at: str
    read_at: str | None


class ChatMessagePage(TypedDict):
    """A page of a chat's messages (oldest first within the page)."""

    data: list[ChatMessageJson]
    nextCursor: str | None


class ContactJson(TypedDict):
    """Someone the phone talked with."""

    chat_id: str
    number: str | None
    lid: str | None
    profile_name: str | None
    first_seen: str
    last_seen: str


class ContactPage(TypedDict):
    """A page of contacts."""

    data: list[ContactJson]
    nextCursor: str | None


class ReadResult(TypedDict):
    """What marking a chat read did."""

    chat_id: str
    marked: int
    provider_notified: bool


class CheckedNumber(TypedDict):
    """One number of an on-WhatsApp check: as given, normalised, and the answer."""

    input: str
    number: str
    on_whatsapp: bool


class CheckAnswer(TypedDict):
    """The answer of an on-WhatsApp check, in the order asked."""

    results: list[CheckedNumber]


class TypingRequest(BaseModel):
    """Body of a typing indicator."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["typing", "recording", "paused"] = Field("typing", description="What the contact sees")


class CheckRequest(BaseModel):
    """Body of an on-WhatsApp check."""

    model_config = ConfigDict(extra="forbid")
    numbers: list[Annotated[str, Field(min_length=3, max_length=32)]] = Field(min_length=1, max_length=100)


CHAT_EXAMPLE: ChatJson = {
    "chat_id": "60123456789@c.us", "number": "60123456789", "lid": None, "contact_name": "Aisha",
    "unread_count": 2, "last_message": {"message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f",
                                        "direction": "inbound", "status": "delivered", "type": "text",
                                        "preview": "Is this still available?", "at": "2026-01-01T10:00:00+00:00"}}


MESSAGE_PAGE_EXAMPLE = {"data": [{
    "message_id": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f", "external_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB",
    "direction": "inbound", "status": "delivered", "type": "image", "content": "look",
    "media": {"id": "med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f", "state": "stored", "mime_type": "image/jpeg",
              "filename": None},
    "at": "2026-01-01T10:00:00+00:00", "read_at": None}], "nextCursor": "MjAyNi0wMS0wMVQxMDowMDowMCswMDowMHwxMjM"}
CONTACT_PAGE_EXAMPLE = {"data": [{"chat_id": "60123456789@c.us", "number": "60123456789", "lid": None,
                                  "profile_name": "Aisha", "first_seen": "2025-12-01T08:00:00+00:00",
                                  "last_seen": "2026-01-01T10:00:00+00:00"}], "nextCursor": None}


def _ok(example: object) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {"application/json": {"example": example}}}}


def _preview(text: str | None) -> str | None:
    return text if text is None or len(text) <= 120 else text[:119] + "…"


class ChatRoutes:
    """The conversation routes over the database and, for provider calls, the Cloud API client."""

    def __init__(self, ctx: ProcessContext, client: CloudApiClient, box: SecretBox, settings: Settings) -> None:
        self.ctx = ctx
        self.client = client
        self.box = box
        self.settings = settings
        self.router = APIRouter(tags=["conversations"])
        self._add_routes()

    async def _web_receipts(self, company_id: str, phone_index: int, chat_id: str, principal: Principal) -> bool:
        """Read receipts for the chat's unread messages through the owning session (False: nothing unread)."""
        unread = await store.unread_inbound(self.db, company_id, phone_index, chat_id)
        if not unread:
            return False
        group = chat_id.endswith("@g.us")
        messages: list[JsonValue] = [{"id": external_id, "sender": sender if group else None}
                                     for external_id, sender in unread]
        await owner_answer(self.ctx, SessionKey(company_id, phone_index), "chat",
                           {"op": "read", "chat": chat_id, "messages": messages},
                           principal=principal, what="the read receipt", wait=WAIT_S)
        return True

    @property
    def db(self) -> Database:
        """The process's database pool."""
        return self.ctx.db

    async def _cloud_typing(self, phone: PhoneConfig, chat_id: str) -> None:
        """The Cloud API's typing indicator, on the chat's newest inbound message (422 without one)."""
        newest = await store.last_inbound(self.db, phone.company_id, phone.phone_index, chat_id)
        if newest is None:
            raise NotOnThisEngine("the Cloud API shows typing only in reply to a message the contact sent: "
                                  "this chat has none")
        await self.client.mark_as_read(credentials_for_phone(self.settings, self.box, phone), newest,
                                       typing_indicator=True)

    async def _web_check(self, company_id: str, phone_index: int, raw_numbers: list[str],
                         principal: Principal) -> CheckAnswer:
        """Which numbers are on WhatsApp, asked by the owning session (numbers normalised first: 422)."""
        numbers = [normalize_phone(n, field="numbers") for n in raw_numbers]
        data = await owner_answer(self.ctx, SessionKey(company_id, phone_index), "chat",
                                  {"op": "check", "numbers": list(dict.fromkeys(numbers))},
                                  principal=principal, what="the on-WhatsApp check", wait=WAIT_S)
        found = data.get("numbers")
        answers = found if isinstance(found, dict) else {}
        return {"results": [{"input": raw, "number": n, "on_whatsapp": answers.get(n) is True}
                            for raw, n in zip(raw_numbers, numbers, strict=True)]}

    async def _phone(self, company_id: str, phone_index: int) -> PhoneConfig:
        async with self.db.connection() as conn:
            phone = await get_phone(conn, company_id, phone_index)
        if phone is None:
            raise NotFound(f"no phone {phone_index} configured for company {company_id!r}")
        return phone

    def _add_routes(self) -> None:
        router = self.router

        @router.get("/api/v1/chats", summary="A phone's chats, most recent first",
                    responses={200: {"content": {"application/json": {"example": {
                        "data": [CHAT_EXAMPLE], "nextCursor": None}}}}, **problem_responses(401, 404, 422, 503)})
        async def list_chats(principal: CurrentPrincipal, phoneIndex: PhoneQuery = 0, companyId: CompanyQuery = None,
                             unread: Annotated[bool, Query(description="Only chats with unread messages")] = False,
                             cursor: Annotated[str | None, Query(max_length=200)] = None,
                             limit: LimitQuery = 50) -> ChatPage:
            company_id = principal.company_required(companyId)
            await self._phone(company_id, phoneIndex)
            rows = await store.chats(self.db, company_id, phoneIndex, cursor=Cursor.decode(cursor), limit=limit,
                                     unread_only=unread)
            data: list[ChatJson] = [{
                "chat_id": r.chat_id, "number": r.number, "lid": r.lid, "contact_name": r.contact_name,
                "unread_count": r.unread_count,
                "last_message": {"message_id": r.message_id, "direction": r.direction, "status": r.status,
                                 "type": r.message_type, "preview": _preview(r.content),
                                 "at": r.created_at.isoformat()},
            } for r in rows]
            last = rows[-1] if len(rows) == limit else None
            return {"data": data, "nextCursor": Cursor(last.created_at, str(last.id)).encode() if last else None}

        @router.get("/api/v1/chats/{chatId}/messages", summary="One chat's messages, both directions, paged back",
                    responses={**_ok(MESSAGE_PAGE_EXAMPLE), **problem_responses(401, 404, 422, 503)})
        async def chat_messages(principal: CurrentPrincipal, chatId: ChatPath, phoneIndex: PhoneQuery = 0,
                                companyId: CompanyQuery = None,
                                before: Annotated[str | None, Query(max_length=200,
                                                                    description="nextCursor of the page after")] = None,
                                limit: LimitQuery = 50) -> ChatMessagePage:
            company_id = principal.company_required(companyId)
            await self._phone(company_id, phoneIndex)
            chat_id = normalize_recipient(chatId).chat_id
            rows = await store.chat_messages(self.db, company_id, phoneIndex, chat_id,
                                             before=Cursor.decode(before, "before"), limit=limit)
            data: list[ChatMessageJson] = [{
                "message_id": r.message_id, "external_id": r.external_id, "direction": r.direction,
                "status": r.status, "type": r.message_type, "content": r.content,
                "media": {"id": r.media_object_id, "state": r.media_state, "mime_type": r.media_mime_type,
                          "filename": r.media_filename} if r.media_state or r.media_object_id else None,
                "at": r.created_at.isoformat(), "read_at": r.read_at.isoformat() if r.read_at else None,
            } for r in reversed(rows)]
            oldest = rows[-1] if len(rows) == limit else None
            return {"data": data,
                    "nextCursor": Cursor(oldest.created_at, str(oldest.id)).encode() if oldest else None}

        @router.post("/api/v1/chats/{chatId}/read", summary="Mark a chat read (at the provider too)",
                     responses={**_ok({"chat_id": "60123456789@c.us", "marked": 2, "provider_notified": True}),
                                **problem_responses(401, 404, 409, 422, 502, 503)})
        async def read_chat(principal: CurrentPrincipal, chatId: ChatPath, phoneIndex: PhoneQuery = 0,
                            companyId: CompanyQuery = None) -> ReadResult:
            company_id = principal.company_required(companyId)
            phone = await self._phone(company_id, phoneIndex)
            chat_id = normalize_recipient(chatId).chat_id
            notified = False
            newest = await store.last_inbound(self.db, company_id, phoneIndex, chat_id)
            if phone.connection_type not in CLOUD_TYPES:
                notified = await self._web_receipts(company_id, phoneIndex, chat_id, principal)
            elif newest:
                # Meta marks the message and every earlier one read; done before our state changes,
                # so a refusal leaves the chat unread (and says why).
                notified = await self.client.mark_as_read(credentials_for_phone(self.settings, self.box, phone),
                                                          newest)
            async with self.db.transaction() as conn:
                marked, _newest = await store.mark_read(conn, company_id, phoneIndex, chat_id)
            return {"chat_id": chat_id, "marked": marked, "provider_notified": notified}

        @router.post("/api/v1/chats/{chatId}/typing", summary="Show a typing indicator in the chat",
                     responses={**_ok({"chat_id": "60123456789@c.us", "state": "typing", "provider_notified": True}),
                                **problem_responses(401, 404, 409, 422, 502, 503)})
        async def typing(principal: CurrentPrincipal, chatId: ChatPath, body: TypingRequest,
                         phoneIndex: PhoneQuery = 0, companyId: CompanyQuery = None) -> dict[str, object]:
            company_id = principal.company_required(companyId)
            phone = await self._phone(company_id, phoneIndex)
            chat_id = normalize_recipient(chatId).chat_id
            if phone.connection_type not in CLOUD_TYPES:
                await owner_answer(self.ctx, SessionKey(company_id, phoneIndex), "chat",
                                   {"op": "typing", "chat": chat_id, "state": WEB_PRESENCE[body.state]},
                                   principal=principal, what="typing", wait=WAIT_S)
            elif body.state != "typing":
                raise NotOnThisEngine(f"the Cloud API has no {body.state!r} indicator: only state 'typing'",
                                      errors=[{"field": "state", "message": "only 'typing' on Cloud API phones",
                                               "type": "value_error"}])
            else:
                await self._cloud_typing(phone, chat_id)
            return {"chat_id": chat_id, "state": body.state, "provider_notified": True}

        @router.get("/api/v1/contacts", summary="Everyone the phone talked with, most recently seen first",
                    responses={**_ok(CONTACT_PAGE_EXAMPLE), **problem_responses(401, 404, 422, 503)})
        async def list_contacts(principal: CurrentPrincipal, phoneIndex: PhoneQuery = 0,
                                companyId: CompanyQuery = None,
                                cursor: Annotated[str | None, Query(max_length=200)] = None,
                                limit: LimitQuery = 50) -> ContactPage:
            company_id = principal.company_required(companyId)
            await self._phone(company_id, phoneIndex)
            rows = await store.contacts(self.db, company_id, phoneIndex, cursor=Cursor.decode(cursor), limit=limit)
            data: list[ContactJson] = [{
                "chat_id": r.chat_id, "number": r.number, "lid": r.lid, "profile_name": r.profile_name,
                "first_seen": r.first_seen.isoformat(), "last_seen": r.last_seen.isoformat()} for r in rows]
            last = rows[-1] if len(rows) == limit else None
            return {"data": data, "nextCursor": Cursor(last.last_seen, last.chat_id).encode() if last else None}

        @router.post("/api/v1/contacts/check", summary="Which numbers are on WhatsApp (WhatsApp-Web phones)",
                     responses={422: {"description": "Not offered by this phone's engine (Cloud API phones)",
                                      "content": {"application/problem+json": {"example": {
                                          "type": "https://bisnesgpt.dev/problems/not-offered-by-engine",
                                          "title": "Not offered by this phone's engine", "status": 422,
                                          "detail": "the Cloud API has no on-WhatsApp check: send a template and "
                                                    "read its status (or use a WhatsApp-Web phone)",
                                          "errors": []}}}},
                                **_ok({"results": [
                                    {"input": "+60 12-345 6789", "number": "60123456789", "on_whatsapp": True},
                                    {"input": "60123456404", "number": "60123456404", "on_whatsapp": False}]}),
                                **problem_responses(401, 404, 409, 502, 503)})
        async def check_contacts(principal: CurrentPrincipal, body: CheckRequest, phoneIndex: PhoneQuery = 0,
                                 companyId: CompanyQuery = None) -> CheckAnswer:
            company_id = principal.company_required(companyId)
            phone = await self._phone(company_id, phoneIndex)
            if phone.connection_type in CLOUD_TYPES:
                raise NotOnThisEngine("the Cloud API has no on-WhatsApp check: send a template and read its status "
                                      "(or use a WhatsApp-Web phone)")
            return await self._web_check(company_id, phoneIndex, body.numbers, principal)
