"""Phone configuration and bot-status bodies (the original ``/api/whatsapp`` routes' names)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bisnesgpt.api.schemas.antiban import SendingTodayView
from bisnesgpt.api.schemas.common import CompanyId, JsonObject, PhoneIndex, Strict
from bisnesgpt.config.engines import MAX_PHONE_MESSAGES_PER_SECOND
from bisnesgpt.engines.meta.phone_rates import RateLimit

ProviderId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Graph object ids are digit strings (they go into the Graph URL's path when the claim is proven).
GraphId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]
# Credentials travel in an HTTP header when the claim is proven: visible ASCII only.
Secret = Annotated[str, Field(min_length=8, max_length=4096, pattern=r"^[!-~]+$",
                              description="Stored encrypted; never returned")]
DisplayNumber = Annotated[str, Field(max_length=32, pattern=r"^[+0-9 ()-]{3,32}$", examples=["+60 12-345 6789"])]


class MetaDirectConnect(Strict):
    """Body of connecting a phone through Meta's Cloud API (the token is stored encrypted)."""

    companyId: CompanyId
    phoneIndex: PhoneIndex
    phoneNumberId: GraphId = Field(examples=["106540352242922"])
    wabaId: GraphId = Field(examples=["102290129340398"])
    accessToken: Secret = Field(examples=["EAAG...token"])
    displayPhoneNumber: DisplayNumber | None = None
    connectionType: Literal["meta_direct", "meta_embedded"] = "meta_direct"


class Dialog360Onboard(Strict):
    """Body of saving a phone onboarded through 360dialog (the API key is stored encrypted)."""

    companyId: CompanyId
    phoneIndex: PhoneIndex
    clientId: ProviderId = Field(examples=["aBcD1234"])
    channelId: ProviderId = Field(examples=["XyZ98765"])
    apiKey: Secret | None = Field(default=None, description="The channel's D360-API-KEY (stored encrypted)")
    displayPhoneNumber: DisplayNumber | None = None


class PhoneConfigRow(BaseModel):
    """A phone's configuration (the original's snake_case columns); secrets only as has_*."""

    company_id: str
    phone_index: int
    connection_type: str
    process_name: str | None
    queue_name: str | None
    status: str | None
    display_phone_number: str | None
    meta_phone_number_id: str | None
    meta_waba_id: str | None
    dialog360_client_id: str | None
    dialog360_channel_id: str | None
    has_access_token: bool
    has_api_key: bool
    ordered_sends: bool = Field(description="Messages to one chat leave in acceptance order unless a message "
                                            "says \"ordered\": false (`bisnesgpt phones set --unordered` turns "
                                            "it off for the phone)")
    created_at: str
    updated_at: str


class PhoneConfigSaved(BaseModel):
    """The answer to a connect / onboard: where the phone's messages go now."""

    success: bool = True
    companyId: str
    phoneIndex: int
    connectionType: str
    processName: str | None
    queueName: str | None
    displayPhoneNumber: str | None
    status: str | None


MessagesPerSecond = Annotated[float, Field(gt=0, le=MAX_PHONE_MESSAGES_PER_SECOND, examples=[40])]


class RateLimitChange(Strict):
    """Body of a rate-limit change: the phone's own messages per second, or null for the default."""

    messagesPerSecond: MessagesPerSecond | None = Field(
        description=f"above 0, at most {MAX_PHONE_MESSAGES_PER_SECOND}; null: the default "
                    "(META_PHONE_MESSAGES_PER_SECOND, or META_COEXISTENCE_MESSAGES_PER_SECOND for a "
                    "coexistence number)")


class PhoneRateLimit(BaseModel):
    """A phone's send rate: its own (null: none), the default, and the one the engine paces by."""

    companyId: str
    phoneIndex: int
    messagesPerSecond: float | None
    defaultMessagesPerSecond: float
    effectiveMessagesPerSecond: float
    perPhone: bool = Field(description="false: a WhatsApp-Web phone (WWEBJS_MAX_MESSAGES_PER_SECOND, every session)")

    @classmethod
    def of(cls, company_id: str, phone_index: int, rate: RateLimit) -> PhoneRateLimit:
        """The answer for one phone's ``RateLimit``."""
        return cls(companyId=company_id, phoneIndex=phone_index, messagesPerSecond=rate.configured,
                   defaultMessagesPerSecond=rate.default, effectiveMessagesPerSecond=rate.effective,
                   perPhone=rate.per_phone)


RATE_LIMIT_EXAMPLE = {"companyId": "acme", "phoneIndex": 1, "messagesPerSecond": 40,
                      "defaultMessagesPerSecond": 80, "effectiveMessagesPerSecond": 40, "perPhone": True}


class Removed(BaseModel):
    """The answer to removing a phone's configuration."""

    success: bool = True
    companyId: str
    phoneIndex: int


class PhoneBotStatus(BaseModel):
    """One phone's connection status in ``/api/bot-status``."""

    phoneIndex: int
    status: str = Field(description="initializing | qr | pairing_code | authenticated | ready | error | "
                                    "disconnected | pending | paused | not_configured")
    connectionType: str
    processName: str | None
    configured: bool
    qrCode: str | None = Field(description="PNG data URL of the pairing QR code while status is 'qr'")
    pairingCode: str | None
    phoneInfo: str | None = Field(description="The phone's number once known")
    lastSeen: str | None
    error: str | None
    pausedUntil: str | None = Field(None, description="While status is 'paused' (a Cloud API phone after "
                                                       "368 / 131031): when sending resumes (ISO 8601)")
    sending: SendingTodayView | None = Field(None, description="A WhatsApp-Web phone's sends today (UTC) against "
                                                               "its anti-ban caps and warm-up day")


class BotStatus(BaseModel):
    """Per-phone status; the top-level status/qrCode/phoneInfo are phone 0's (original shape)."""

    companyId: str
    status: str
    qrCode: str | None
    phoneInfo: str | None
    connectionType: str | None
    phoneCount: int
    phones: list[PhoneBotStatus]


WWEBJS_PHONE_STATUS_EXAMPLE: JsonObject = {
    "phoneIndex": 0, "status": "qr", "connectionType": "wwebjs", "processName": "wwebjs", "configured": True,
    "qrCode": "data:image/png;base64,iVBORw0KGgo...", "pairingCode": None, "phoneInfo": None,
    "lastSeen": "2025-01-01T10:00:00+00:00", "error": None,
    "sending": {"sentToday": 12, "newChatsToday": 3, "messageCap": 58, "newChatCap": 6, "warmupDay": 2,
                "warmupDays": 7}}
BOT_STATUS_EXAMPLE: JsonObject = {
    "companyId": "acme", "status": "qr", "qrCode": "data:image/png;base64,iVBORw0KGgo...", "phoneInfo": None,
    "connectionType": "wwebjs", "phoneCount": 2,
    "phones": [
        WWEBJS_PHONE_STATUS_EXAMPLE,
        {"phoneIndex": 1, "status": "pending", "connectionType": "meta_direct", "processName": "meta",
         "configured": True, "qrCode": None, "pairingCode": None, "phoneInfo": "+60 12-345 6789",
         "lastSeen": None, "error": None},
    ],
}
PHONE_ROW_EXAMPLE: JsonObject = {
    "company_id": "acme", "phone_index": 1, "connection_type": "meta_direct", "process_name": "meta",
    "queue_name": "meta-messages", "status": "pending", "display_phone_number": "+60 12-345 6789",
    "meta_phone_number_id": "106540352242922", "meta_waba_id": "102290129340398", "dialog360_client_id": None,
    "dialog360_channel_id": None, "has_access_token": True, "has_api_key": False,
    "created_at": "2025-01-01T10:00:00+00:00", "updated_at": "2025-01-01T10:00:00+00:00",
}
