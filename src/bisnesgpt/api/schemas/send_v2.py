"""The original ``/api/v2`` send bodies, with their original field names.

They keep ``message``, ``imageUrl``, ``quotedMessageId``, ``phoneIndex``, ``userName`` … so
existing clients keep working; where versions of the original disagreed on a name both are
accepted (``filename``/``fileName``, ``newMessage``/``newText``, ``reaction``/``emoji``), never
both at once.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, model_validator

from bisnesgpt.api.schemas.common import (
    Caption,
    JsonObject,
    MediaUrl,
    MessageRef,
    Ordered,
    PhoneIndex,
    Strict,
    TextBody,
    UserName,
)

ModelT = TypeVar("ModelT", bound=BaseModel)


def exactly_one(model: ModelT, first: str, second: str) -> ModelT:
    """``model``, if it gives exactly one of its fields ``first`` and ``second`` (else why it is refused)."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"give exactly one of {first} or {second}")
    return model


class V2Base(Strict):
    """Fields every v2 send to a chat takes: which phone, who sent it, what it replies to."""

    phoneIndex: PhoneIndex = 0
    userName: UserName | None = None
    quotedMessageId: MessageRef | None = Field(default=None, description="Reply to this message")
    ordered: Ordered = None


class V2Text(V2Base):
    """``POST /api/v2/messages/text/…``: a text message."""

    message: TextBody


class V2Image(V2Base):
    """``POST /api/v2/messages/image/…``: an image by URL, with an optional caption."""

    imageUrl: MediaUrl
    caption: Caption | None = None


class V2Video(V2Base):
    """``POST /api/v2/messages/video/…``: a video by URL, with an optional caption."""

    videoUrl: MediaUrl
    caption: Caption | None = None


class V2Audio(V2Base):
    """``POST /api/v2/messages/audio/…``: audio (a voice note) by URL."""

    audioUrl: MediaUrl


Filename = Annotated[str, Field(min_length=1, max_length=240)]
MimeType = Annotated[str, Field(max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class V2Document(V2Base):
    """``POST /api/v2/messages/document/…``: a document by URL, named ``filename`` (or ``fileName``)."""

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
        """The file name, under whichever of its two names it came."""
        return self.filename or self.fileName


TemplateName = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$",
                                    examples=["order_update"])]
LanguageCode = Annotated[str, Field(min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$",
                                    examples=["en_US"])]
TemplateComponents = Annotated[list[JsonObject], Field(max_length=30)]


class V2Template(V2Base):
    """``POST /api/v2/messages/template/…``: an approved template with its components."""

    templateName: TemplateName
    templateLang: LanguageCode
    templateComponents: TemplateComponents | None = None


class V2Edit(Strict):
    """``PUT /api/v2/messages/…``: the new text of a sent message (``newMessage`` or ``newText``)."""

    phoneIndex: PhoneIndex = 0
    ordered: Ordered = None
    newMessage: TextBody | None = None
    newText: TextBody | None = Field(default=None, description="Alias of `newMessage` used by older clients")

    @model_validator(mode="after")
    def _one_text(self) -> V2Edit:
        return exactly_one(self, "newMessage", "newText")

    @property
    def text(self) -> str:
        """The new text, under whichever of its two names it came."""
        return self.newMessage or self.newText or ""


class V2Delete(Strict):
    """``DELETE /api/v2/messages/…`` (body optional): for everyone or on this phone only."""

    phoneIndex: PhoneIndex = 0
    ordered: Ordered = None
    deleteForEveryone: bool = Field(default=True, description="Delete for everyone (false: only on this phone)")
    messageId: MessageRef | None = Field(default=None, description="If given, must equal the path's messageId")
    chatId: str | None = Field(default=None, max_length=64, description="If given, must name the path's chat")


Emoji = Annotated[str, Field(max_length=32, description="The emoji; an empty string removes the reaction")]


class V2React(Strict):
    """``POST /api/messages/react/…``: the emoji (``reaction`` or ``emoji``; empty removes it)."""

    phoneIndex: PhoneIndex = 0
    ordered: Ordered = None
    reaction: Emoji | None = None
    emoji: Emoji | None = Field(default=None, description="Alias of `reaction` used by older clients")
    chatId: str | None = Field(default=None, max_length=64,
                               description="The chat, needed only for a message this system has no record of")

    @model_validator(mode="after")
    def _one_emoji(self) -> V2React:
        return exactly_one(self, "reaction", "emoji")

    @property
    def effective_emoji(self) -> str:
        """The emoji, under whichever of its two names it came ("" removes the reaction)."""
        return self.reaction if self.reaction is not None else (self.emoji or "")
