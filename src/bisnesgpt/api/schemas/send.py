"""Send request bodies: the generic ``/api/v1`` one, and the ``/api/v2`` ones (``send_v2``).

The v1 body is the Cloud API message shape (``to``, ``type``, one object per type,
``context.message_id``) plus ``phoneIndex``; every type has its own schema and unknown
fields are rejected.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from bisnesgpt.api.schemas.common import (
    Caption,
    CompanyId,
    JsonObject,
    MediaUrl,
    MessageRef,
    Ordered,
    PhoneIndex,
    Strict,
    TextBody,
)
from bisnesgpt.api.schemas.send_v2 import Emoji, Filename, LanguageCode, TemplateComponents, TemplateName, exactly_one

# --------------------------------------------------------------------------------------------
# The generic /api/v1/messages body (Cloud API shape)
# --------------------------------------------------------------------------------------------


class Context(Strict):
    """The message a v1 send replies to."""

    message_id: MessageRef


class V1Base(Strict):
    """Fields of every v1 send: the recipient, the reply context, which phone and company."""

    messaging_product: Literal["whatsapp"] = "whatsapp"
    recipient_type: Literal["individual", "group"] | None = None
    to: str = Field(min_length=1, max_length=64, description="Phone number with country code, or a chat id",
                    examples=["60123456789"])
    context: Context | None = None
    phoneIndex: PhoneIndex = 0
    companyId: CompanyId | None = Field(default=None, description="Required with an operator key; else the key's")
    ordered: Ordered = None
    simulateTyping: bool | None = Field(
        None, description="WhatsApp-Web phones: show \"typing…\" before this text (overrides WWEBJS_SIMULATE_TYPING)")
    delayMs: int | None = Field(None, ge=0, le=30_000,
                                description="WhatsApp-Web phones: wait this long before sending it (after pacing)")


class TextObject(Strict):
    """A v1 ``text`` object."""

    body: TextBody
    preview_url: bool = False
    mentions: list[Annotated[str, Field(pattern=r"^\+?\d{5,20}$")]] | None = Field(
        None, max_length=256, examples=[["60123456789"]],
        description="Numbers the text @-mentions (WhatsApp-Web phones; write them in the body as @60123456789)")


class Media(Strict):
    """A media object: exactly one of ``link`` (http/https) or ``id`` (an uploaded media id)."""

    link: MediaUrl | None = None
    id: Annotated[str, Field(
        min_length=1, max_length=128, examples=["med_01936f6e6a7b7c3d9e2f4a5b6c7d8e9f"],
        description="A media id from POST /api/v1/media (med_…; sent on both engines), or on Cloud API "
                    "phones a Graph media id")] | None = None

    @model_validator(mode="after")
    def _link_or_id(self) -> Media:
        return exactly_one(self, "link", "id")


class CaptionedMedia(Media):
    """An image or video object, with an optional caption."""

    caption: Caption | None = None


class DocumentMedia(CaptionedMedia):
    """A document object, with an optional file name."""

    filename: Filename | None = None


class Location(Strict):
    """A v1 ``location`` object: coordinates, optionally named."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: Annotated[str, Field(max_length=1000)] | None = None
    address: Annotated[str, Field(max_length=1000)] | None = None


class ContactName(Strict):
    """A shared contact's name."""

    formatted_name: Annotated[str, Field(min_length=1, max_length=1000)]
    first_name: Annotated[str, Field(max_length=1000)] | None = None
    last_name: Annotated[str, Field(max_length=1000)] | None = None


class Contact(Strict):
    """A shared contact (vCard fields as the Cloud API names them)."""

    name: ContactName
    phones: Annotated[list[JsonObject], Field(max_length=20)] | None = None
    emails: Annotated[list[JsonObject], Field(max_length=20)] | None = None
    addresses: Annotated[list[JsonObject], Field(max_length=20)] | None = None
    org: JsonObject | None = None
    urls: Annotated[list[JsonObject], Field(max_length=20)] | None = None
    birthday: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None


class InteractiveText(Strict):
    """The body text of an interactive message."""

    text: Annotated[str, Field(min_length=1, max_length=1024)]


class InteractiveFooter(Strict):
    """The footer text of an interactive message."""

    text: Annotated[str, Field(min_length=1, max_length=60)]


class Interactive(Strict):
    """A v1 ``interactive`` object: buttons, lists, flows … (``action`` as the Cloud API takes it)."""

    type: Literal["button", "list", "cta_url", "product", "product_list", "catalog_message", "flow",
                  "location_request_message", "call_permission_request"]
    header: JsonObject | None = None
    body: InteractiveText | None = None
    footer: InteractiveFooter | None = None
    action: JsonObject


class TemplateLanguage(Strict):
    """A template's language code."""

    code: LanguageCode
    policy: Literal["deterministic"] = "deterministic"


class Template(Strict):
    """A v1 ``template`` object: the approved template's name, language and components."""

    name: TemplateName
    language: TemplateLanguage
    components: TemplateComponents | None = None


class Reaction(Strict):
    """A v1 ``reaction`` object: the emoji for a message."""

    message_id: MessageRef
    emoji: Emoji


class EditObject(Strict):
    """The message to edit and its new text."""

    message_id: MessageRef
    text: TextObject


class DeleteObject(Strict):
    """The message to delete, for everyone or on this phone only."""

    message_id: MessageRef
    for_everyone: bool = True


class ForwardObject(Strict):
    """The message to forward: ours, sent or received, of the same company and phone."""

    message_id: MessageRef = Field(description="Its messageId (or provider id); its text, media, location or "
                                               "contacts are sent again, marked as forwarded",
                                   examples=["01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f"])


class TextMessage(V1Base):
    """A v1 text message."""

    type: Literal["text"]
    text: TextObject


class ImageMessage(V1Base):
    """A v1 image message."""

    type: Literal["image"]
    image: CaptionedMedia


class VideoMessage(V1Base):
    """A v1 video message."""

    type: Literal["video"]
    video: CaptionedMedia


class AudioMessage(V1Base):
    """A v1 audio message."""

    type: Literal["audio"]
    audio: Media


class DocumentMessage(V1Base):
    """A v1 document message."""

    type: Literal["document"]
    document: DocumentMedia


class StickerMessage(V1Base):
    """A v1 sticker message."""

    type: Literal["sticker"]
    sticker: Media


class LocationMessage(V1Base):
    """A v1 location message."""

    type: Literal["location"]
    location: Location


class Poll(Strict):
    """A poll (WhatsApp-Web phones): the question, 2 to 12 distinct options, how many one may pick."""

    name: Annotated[str, Field(min_length=1, max_length=255)]
    options: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=2, max_length=12)]
    selectable_count: int = Field(1, ge=0, le=12, description="1: one option; 0: any number; n: up to n")

    @model_validator(mode="after")
    def _distinct(self) -> Poll:
        if len(set(self.options)) != len(self.options):
            raise ValueError("options must be distinct")
        if self.selectable_count > len(self.options):
            raise ValueError("selectable_count cannot exceed the number of options")
        return self


class PollMessage(V1Base):
    """A v1 poll (WhatsApp-Web phones; votes arrive as ``message.poll_vote`` events)."""

    type: Literal["poll"]
    poll: Poll


class StatusPost(Strict):
    """A status (story) post: a ``text`` on a ``background_color``, or an ``image``/``video`` by link with a
    ``caption``; seen by ``recipients`` (numbers), or by all contacts when left out."""

    text: Annotated[str, Field(min_length=1, max_length=700)] | None = None
    background_color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    font: int | None = Field(None, ge=0, le=10)
    image: Media | None = None
    video: Media | None = None
    caption: Caption | None = None
    recipients: Annotated[list[Annotated[str, Field(pattern=r"^\+?\d{5,20}$")]],
                          Field(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StatusPost:
        given = [k for k in ("text", "image", "video") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a status post is exactly one of text, image or video")
        if self.text is None and (self.background_color or self.font is not None):
            raise ValueError("background_color and font are for text posts")
        return self


class StatusMessage(V1Base):
    """A v1 status (story) post (WhatsApp-Web phones), sent ``to`` ``status@broadcast``."""

    to: Literal["status@broadcast"] = "status@broadcast"
    type: Literal["status"]
    status: StatusPost


class ContactsMessage(V1Base):
    """A v1 message sharing one or more contacts."""

    type: Literal["contacts"]
    contacts: Annotated[list[Contact], Field(min_length=1, max_length=20)]


class InteractiveMessage(V1Base):
    """A v1 interactive message."""

    type: Literal["interactive"]
    interactive: Interactive


class TemplateMessage(V1Base):
    """A v1 template message (outside the 24-hour window, the only kind Meta delivers)."""

    type: Literal["template"]
    template: Template


class ReactionMessage(V1Base):
    """A v1 reaction to an earlier message."""

    type: Literal["reaction"]
    reaction: Reaction


class EditMessage(V1Base):
    """WhatsApp-Web extension: replace the text of a message sent earlier."""

    type: Literal["edit"]
    edit: EditObject


class DeleteMessage(V1Base):
    """WhatsApp-Web extension: delete a message sent earlier."""

    type: Literal["delete"]
    delete: DeleteObject


class ForwardMessage(V1Base):
    """WhatsApp-Web extension: forward a stored message to ``to``, shown there as forwarded."""

    type: Literal["forward"]
    forward: ForwardObject

    @model_validator(mode="after")
    def _no_quote(self) -> ForwardMessage:
        if self.context is not None:
            raise ValueError("a forward cannot quote a message: leave out context")
        return self


V1Message = Annotated[
    TextMessage | ImageMessage | VideoMessage | AudioMessage | DocumentMessage | StickerMessage
    | LocationMessage | ContactsMessage | PollMessage | StatusMessage | InteractiveMessage | TemplateMessage
    | ReactionMessage
    | EditMessage | DeleteMessage | ForwardMessage,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


class SendError(BaseModel):
    """The provider's error of a send that ended ``failed``."""

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


SEND_ACCEPTED_EXAMPLE: JsonObject = {"success": True, "messageId": "01936f6e-6a7b-7c3d-9e2f-4a5b6c7d8e9f",
                         "status": "queued", "process": "wwebjs", "queueName": "wwebjs-messages"}
SEND_DONE_EXAMPLE: JsonObject = {**SEND_ACCEPTED_EXAMPLE, "status": "sent",
                     "externalId": "true_60123456789@c.us_3EB0C767D26A1D4E5F60"}
