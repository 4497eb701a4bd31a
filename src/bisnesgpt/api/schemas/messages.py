"""Message read models: one message with its state history, and a page of messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, Field, JsonValue

from bisnesgpt.api.schemas.common import JsonObject, iso
from bisnesgpt.messaging.edits import NO_CHANGES, Changes

if TYPE_CHECKING:
    from bisnesgpt.messaging.store import MessageRecord


class MessageErrorView(BaseModel):
    """The provider's error of a failed message."""

    code: str | None
    title: str | None
    details: JsonValue = None


class StatusChange(BaseModel):
    """One step of a message's state history."""

    fromStatus: str | None
    toStatus: str
    source: str = Field(description="Who moved it: api, wwebjs, meta, webhook, outbox …")
    detail: JsonObject
    at: str | None = Field(description="When it was recorded here")
    applied: bool = Field(default=True, description="false: a provider status received that did not move the "
                                                     "state (e.g. Meta's `sent` after the send returned, a "
                                                     "`delivered` after `read`), kept all the same")
    providerAt: str | None = Field(default=None, description="The provider's own time for this status")


class EditView(BaseModel):
    """One edit of a message that went out: the edit message, its text, and when it was sent."""

    messageId: str = Field(description="The edit message's id")
    content: str | None
    at: str | None


class MessageHeader(BaseModel):
    """What names a message and where it stands: ids, phone, chat, type, state, engine."""

    messageId: str
    companyId: str
    phoneIndex: int
    direction: str
    chatId: str
    type: str
    status: str = Field(description="accepted | queued | sending | sent | delivered | read | failed | cancelled")
    provider: str

    @classmethod
    def of(cls, record: MessageRecord, **fields: Any) -> Self:
        """The model of ``record``: these fields from the row, a subclass's own ones in ``fields``."""
        return cls(messageId=record.message_id, companyId=record.company_id, phoneIndex=record.phone_index,
                   direction=record.direction, chatId=record.chat_id, type=record.message_type,
                   status=record.status, provider=record.provider, **fields)


class MessageView(MessageHeader):
    """A message as the API shows it: state, route, content, provider id and error."""

    connectionType: str | None
    queueName: str | None
    processName: str | None
    externalId: str | None = Field(description="The provider's id (wamid / WhatsApp-Web id) once sent")
    contextMessageId: str | None
    content: str | None
    mediaUrl: str | None
    payload: JsonObject = Field(description="The Cloud-API-shaped body the engine sends")
    error: MessageErrorView | None = Field(description="The provider's error when failed")
    attempts: int
    idempotencyKey: str | None
    source: str
    createdAt: str | None
    updatedAt: str | None
    queuedAt: str | None
    sentAt: str | None
    deliveredAt: str | None
    readAt: str | None
    failedAt: str | None
    pricing: JsonObject | None = Field(default=None, description="Meta's latest `pricing` block: billable, "
                                                                 "category, pricing_model (Cloud API only)")
    conversation: JsonObject | None = Field(default=None, description="Meta's latest `conversation` block: id, "
                                                                      "origin.type, expiration_timestamp")
    providerTimestamp: str | None = Field(default=None, description="Inbound: the provider's time of the message "
                                                                    "(when the contact sent it)")
    edited: bool = Field(default=False, description="An edit of it went out: `content` is the latest text")
    originalContent: str | None = Field(default=None, description="The text it was sent with, once edited")
    edits: list[EditView] = Field(default_factory=list, description="The edits that went out, oldest first")
    deleted: bool = Field(default=False, description="A delete of it went out")
    deletedAt: str | None = Field(default=None, description="When the delete was sent")
    deletedForEveryone: bool | None = Field(default=None, description="Deleted for everyone (false: on the phone)")

    @classmethod
    def of(cls, record: MessageRecord, changes: Changes = NO_CHANGES, **fields: Any) -> Self:
        """The public view of ``record`` (no internal row id) as its ``changes`` (edits, a delete)
        left it; ``fields`` are a subclass's own."""
        error = (MessageErrorView(code=record.error_code, title=record.error_title, details=record.error_details)
                 if record.error_code or record.error_title else None)
        deletion = changes.deletion
        return super().of(
            record, connectionType=record.connection_type, queueName=record.queue_name,
            processName=record.process_name, externalId=record.external_id,
            contextMessageId=record.context_message_id, content=changes.current_content(record.content),
            edited=bool(changes.edits), originalContent=record.content if changes.edits else None,
            edits=[EditView(messageId=e.message_id, content=e.content, at=iso(e.at)) for e in changes.edits],
            deleted=deletion is not None, deletedAt=iso(deletion.at) if deletion else None,
            deletedForEveryone=deletion.for_everyone if deletion else None, mediaUrl=record.media_url,
            payload=record.payload, error=error, attempts=record.attempts, idempotencyKey=record.idempotency_key,
            source=record.source, createdAt=iso(record.created_at), updatedAt=iso(record.updated_at),
            queuedAt=iso(record.queued_at), sentAt=iso(record.sent_at), deliveredAt=iso(record.delivered_at),
            readAt=iso(record.read_at), failedAt=iso(record.failed_at), pricing=record.pricing,
            conversation=record.conversation, providerTimestamp=iso(record.provider_timestamp), **fields)


class MessageDetail(MessageView):
    """A message with its state history."""

    history: list[StatusChange] = Field(description="Every state change, oldest first")


class MessagePage(BaseModel):
    """A page of messages, newest first."""

    data: list[MessageView]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last")


MESSAGE_EXAMPLE: JsonObject = {
    "messageId": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f", "companyId": "acme", "phoneIndex": 0,
    "direction": "outbound", "chatId": "60123456789@c.us", "type": "text", "status": "failed",
    "provider": "meta", "connectionType": "meta_direct", "queueName": "meta-messages", "processName": "meta",
    "externalId": None, "contextMessageId": None, "content": "Hello",
    "mediaUrl": None,
    "payload": {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "60123456789",
                "type": "text", "text": {"body": "Hello", "preview_url": False}},
    "error": {"code": "131026", "title": "Message undeliverable", "details": None},
    "attempts": 1, "idempotencyKey": "order-4711-confirmation", "source": "api",
    "createdAt": "2025-01-01T10:00:00+00:00", "updatedAt": "2025-01-01T10:00:01+00:00",
    "queuedAt": "2025-01-01T10:00:00+00:00", "sentAt": None, "deliveredAt": None, "readAt": None,
    "failedAt": "2025-01-01T10:00:01+00:00", "pricing": None, "conversation": None, "providerTimestamp": None,
    "edited": False, "originalContent": None, "edits": [], "deleted": False, "deletedAt": None,
    "deletedForEveryone": None,
}
MESSAGE_DETAIL_EXAMPLE: JsonObject = {**MESSAGE_EXAMPLE, "history": [
    {"fromStatus": None, "toStatus": "queued", "source": "api", "detail": {"queue": "meta-messages"},
     "at": "2025-01-01T10:00:00+00:00", "applied": True, "providerAt": None},
    {"fromStatus": "queued", "toStatus": "sending", "source": "meta", "detail": {"attempt": 1},
     "at": "2025-01-01T10:00:00+00:00", "applied": True, "providerAt": None},
    {"fromStatus": "sending", "toStatus": "failed", "source": "meta", "detail": {},
     "at": "2025-01-01T10:00:01+00:00", "applied": True, "providerAt": None},
]}
