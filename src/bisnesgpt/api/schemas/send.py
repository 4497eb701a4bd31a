"""Send request bodies: the original ``/api/v2`` routes' bodies and the generic ``/api/v1`` one.

The v2 bodies keep the original field names (``message``, ``imageUrl``, ``quotedMessageId``,
``phoneIndex``, ``userName`` …) so existing clients keep working; where versions of the
original disagreed on a name both are accepted (``filename``/``fileName``,
``newMessage``/``newText``, ``reaction``/``emoji``), never both at once.

The v1 body is the Cloud API message shape (``to``, ``type``, one object per type,
``context.message_id``) plus ``phoneIndex``; every type has its own schema and unknown
fields are rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from bisnesgpt.api.schemas.common import (
    Caption,
    CompanyId,
    MediaUrl,
    MessageRef,
    PhoneIndex,
    Strict,
    TextBody,
    UserName,
)

# --------------------------------------------------------------------------------------------
# The original /api/v2 bodies
# --------------------------------------------------------------------------------------------


class _V2Base(Strict):
    phoneIndex: PhoneIndex = 0
    userName: UserName | None = None
    quotedMessageId: MessageRef | None = Field(default=None, description="Reply to this message")


class V2Text(_V2Base):
    message: TextBody


class V2Image(_V2Base):
    imageUrl: MediaUrl
    caption: Caption | None = None


class V2Video(_V2Base):
    videoUrl: MediaUrl
    caption: Caption | None = None


class V2Audio(_V2Base):
    audioUrl: MediaUrl


Filename = Annotated[str, Field(min_length=1, max_length=240)]
MimeType = Annotated[str, Field(max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class V2Document(_V2Base):
    documentUrl: MediaUrl
    filename: Filename | None = None
    fileName: Filename | None = Field(default=None, description="Alias of `filename` used by older clients")
    mimeType: MimeType | None = None
    caption: Caption | None = None

    @model_validator(mode="after")
    def _one_filename(self) -> V2Document:
        if self.filename is not None and self.fileName is not None:
            raise ValueError("give either filename or fileName, not both")
        return self

    @property
    def effective_filename(self) -> str | None:
        return self.filename or self.fileName


TemplateName = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$",
                                    examples=["order_update"])]
LanguageCode = Annotated[str, Field(min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$",
                                    examples=["en_US"])]
TemplateComponents = Annotated[list[dict[str, Any]], Field(max_length=30)]


class V2Template(_V2Base):
    templateName: TemplateName
    templateLang: LanguageCode
    templateComponents: TemplateComponents | None = None


class V2Edit(Strict):
    phoneIndex: PhoneIndex = 0
    newMessage: TextBody | None = None
    newText: TextBody | None = Field(default=None, description="Alias of `newMessage` used by older clients")

    @model_validator(mode="after")
    def _one_text(self) -> V2Edit:
        if (self.newMessage is None) == (self.newText is None):
            raise ValueError("give exactly one of newMessage or newText")
        return self

    @property
    def text(self) -> str:
        return self.newMessage or self.newText or ""


class V2Delete(Strict):
    phoneIndex: PhoneIndex = 0
    deleteForEveryone: bool = Field(default=True, description="Delete for everyone (false: only on this phone)")
    messageId: MessageRef | None = Field(default=None, description="If given, must equal the path's messageId")
    chatId: str | None = Field(default=None, max_length=64, description="If given, must name the path's chat")


Emoji = Annotated[str, Field(max_length=32, description="The emoji; an empty string removes the reaction")]


class V2React(Strict):
    phoneIndex: PhoneIndex = 0
    reaction: Emoji | None = None
    emoji: Emoji | None = Field(default=None, description="Alias of `reaction` used by older clients")
    chatId: str | None = Field(default=None, max_length=64,
                               description="The chat, needed only for a message this system has no record of")

    @model_validator(mode="after")
    def _one_emoji(self) -> V2React:
        if (self.reaction is None) == (self.emoji is None):
            raise ValueError("give exactly one of reaction or emoji")
        return self

    @property
    def effective_emoji(self) -> str:
        return self.reaction if self.reaction is not None else (self.emoji or "")


# --------------------------------------------------------------------------------------------
# The generic /api/v1/messages body (Cloud API shape)
# --------------------------------------------------------------------------------------------


class Context(Strict):
    message_id: MessageRef


class _V1Base(Strict):
    messaging_product: Literal["whatsapp"] = "whatsapp"
    recipient_type: Literal["individual", "group"] | None = None
    to: str = Field(min_length=1, max_length=64, description="Phone number with country code, or a chat id",
                    examples=["60123456789"])
    context: Context | None = None
    phoneIndex: PhoneIndex = 0
    companyId: CompanyId | None = Field(default=None, description="Required with an operator key; else the key's")


class TextObject(Strict):
    body: TextBody
    preview_url: bool = False


class Media(Strict):
    """A media object: exactly one of ``link`` (http/https) or ``id`` (an uploaded media id)."""

    link: MediaUrl | None = None
    id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @model_validator(mode="after")
    def _link_or_id(self) -> Media:
        if (self.link is None) == (self.id is None):
            raise ValueError("give exactly one of link or id")
        return self


class CaptionedMedia(Media):
    caption: Caption | None = None


class DocumentMedia(CaptionedMedia):
    filename: Filename | None = None


class Location(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: Annotated[str, Field(max_length=1000)] | None = None
    address: Annotated[str, Field(max_length=1000)] | None = None


class ContactName(Strict):
    formatted_name: Annotated[str, Field(min_length=1, max_length=1000)]
    first_name: Annotated[str, Field(max_length=1000)] | None = None
    last_name: Annotated[str, Field(max_length=1000)] | None = None


class Contact(Strict):
    name: ContactName
    phones: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None
    emails: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None
    addresses: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None
    org: dict[str, Any] | None = None
    urls: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None
    birthday: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None


class InteractiveText(Strict):
    text: Annotated[str, Field(min_length=1, max_length=1024)]


class InteractiveFooter(Strict):
    text: Annotated[str, Field(min_length=1, max_length=60)]


class Interactive(Strict):
    type: Literal["button", "list", "cta_url", "product", "product_list", "catalog_message", "flow",
                  "location_request_message", "call_permission_request"]
    header: dict[str, Any] | None = None
    body: InteractiveText | None = None
    footer: InteractiveFooter | None = None
    action: dict[str, Any]


class TemplateLanguage(Strict):
    code: LanguageCode
    policy: Literal["deterministic"] = "deterministic"


class Template(Strict):
    name: TemplateName
    language: TemplateLanguage
    components: TemplateComponents | None = None


class Reaction(Strict):
    message_id: MessageRef
    emoji: Emoji


class EditObject(Strict):
    message_id: MessageRef
    text: TextObject


class DeleteObject(Strict):
    message_id: MessageRef
    for_everyone: bool = True


class TextMessage(_V1Base):
    type: Literal["text"]
    text: TextObject


class ImageMessage(_V1Base):
    type: Literal["image"]
    image: CaptionedMedia


class VideoMessage(_V1Base):
    type: Literal["video"]
    video: CaptionedMedia


class AudioMessage(_V1Base):
    type: Literal["audio"]
    audio: Media


class DocumentMessage(_V1Base):
    type: Literal["document"]
    document: DocumentMedia


class StickerMessage(_V1Base):
    type: Literal["sticker"]
    sticker: Media


class LocationMessage(_V1Base):
    type: Literal["location"]
    location: Location


class ContactsMessage(_V1Base):
    type: Literal["contacts"]
    contacts: Annotated[list[Contact], Field(min_length=1, max_length=20)]


class InteractiveMessage(_V1Base):
    type: Literal["interactive"]
    interactive: Interactive


class TemplateMessage(_V1Base):
    type: Literal["template"]
    template: Template


class ReactionMessage(_V1Base):
    type: Literal["reaction"]
    reaction: Reaction


class EditMessage(_V1Base):
    """WhatsApp-Web extension: replace the text of a message sent earlier."""

    type: Literal["edit"]
    edit: EditObject


class DeleteMessage(_V1Base):
    """WhatsApp-Web extension: delete a message sent earlier."""

    type: Literal["delete"]
    delete: DeleteObject


V1Message = Annotated[
    TextMessage | ImageMessage | VideoMessage | AudioMessage | DocumentMessage | StickerMessage
    | LocationMessage | ContactsMessage | InteractiveMessage | TemplateMessage | ReactionMessage
    | EditMessage | DeleteMessage,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


class SendError(BaseModel):
    code: str | None
    title: str | None


class SendResponse(BaseModel):
    """202: stored and queued. With ``?wait=`` and a final state in time: 200 with the outcome."""

    success: bool = Field(description="false only when the message ended `failed`")
    messageId: str = Field(description="Our id for the message (UUIDv7); use it with GET /api/v1/messages/{id}")
    status: str = Field(description="queued (202), or the state reached while waiting")
    process: str = Field(description="The engine process that sends it: wwebjs | meta")
    queueName: str = Field(description="wwebjs-messages | meta-messages")
    externalId: str | None = Field(default=None, description="The provider's message id, once sent (wait only)")
    error: SendError | None = Field(default=None, description="Provider error when `failed` (wait only)")


SEND_ACCEPTED_EXAMPLE = {"success": True, "messageId": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f",
                         "status": "queued", "process": "wwebjs", "queueName": "wwebjs-messages"}
SEND_DONE_EXAMPLE = {**SEND_ACCEPTED_EXAMPLE, "status": "sent",
                     "externalId": "true_60123456789@c.us_3EB0C767D26A1D4E5F60"}
