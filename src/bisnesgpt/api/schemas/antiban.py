"""Bodies of the anti-ban controls of a WhatsApp-Web phone (and of its company's defaults)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bisnesgpt.api.schemas.common import Strict
from bisnesgpt.engines.wwebjs.antiban import SendingToday
from bisnesgpt.engines.wwebjs.antiban_settings import MAX_DAILY_CAP, MAX_JITTER_MS, MAX_WARMUP_DAYS

Cap = Annotated[int, Field(ge=0, le=MAX_DAILY_CAP)]
# API names (camelCase) of the controls, and the stored ones.
API_NAMES = {"simulateTyping": "simulate_typing", "sendJitterMs": "send_jitter_ms",
             "dailyMessageCap": "daily_message_cap", "dailyNewChatCap": "daily_new_chat_cap",
             "dailyCapAction": "daily_cap_action", "warmupDays": "warmup_days", "checkOnWhatsapp": "check_on_whatsapp"}
STORED_NAMES = {stored: api for api, stored in API_NAMES.items()}


class AntiBanPatch(Strict):
    """The controls to change: a value sets it, ``null`` inherits again (company default, then global)."""

    simulateTyping: bool | None = Field(None, description='"typing…" before each text, for a time proportional '
                                                          "to its length")
    sendJitterMs: Annotated[int, Field(ge=0, le=MAX_JITTER_MS)] | None = Field(
        None, description="a random gap of up to this many ms between two sends of the phone")
    dailyMessageCap: Cap | None = Field(None, description="messages per UTC day (0: no cap)")
    dailyNewChatCap: Cap | None = Field(None, description="first messages to numbers that never wrote, per day "
                                                          "(0: no cap)")
    dailyCapAction: Literal["wait", "fail"] | None = Field(
        None, description="over a cap: wait for the next day (stays queued), or fail DAILY_LIMIT_REACHED")
    warmupDays: Annotated[int, Field(ge=0, le=MAX_WARMUP_DAYS)] | None = Field(
        None, description="a newly paired number's caps grow over this many days (cap x day / days)")
    checkOnWhatsapp: bool | None = Field(None, description="ask WhatsApp first whether a new number is on it "
                                                           "(NOT_ON_WHATSAPP without a send)")


class Effective(BaseModel):
    """One control in effect and where it came from."""

    value: bool | int | str
    source: Literal["phone", "company", "global"]


class SendingTodayView(BaseModel):
    """What the phone sent today (UTC) against the caps in effect today (warm-up applied; 0: no cap)."""

    sentToday: int
    newChatsToday: int
    messageCap: int
    newChatCap: int
    warmupDay: int | None = Field(description="the day of the warm-up (1: the pairing day); null: not warming up")
    warmupDays: int = Field(0, description="the warm-up's length in effect (0: none)")

    @classmethod
    def of(cls, today: SendingToday) -> SendingTodayView:
        """The API's view of a phone's sends today."""
        return cls(sentToday=today.sent_today, newChatsToday=today.new_chats_today, messageCap=today.message_cap,
                   newChatCap=today.new_chat_cap, warmupDay=today.warmup_day, warmupDays=today.warmup_days)


class AntiBanView(BaseModel):
    """A phone's anti-ban controls: in effect (with their source), set on the phone, set as company defaults."""

    companyId: str
    phoneIndex: int
    effective: dict[str, Effective]
    phone: dict[str, bool | int | str | None]
    company: dict[str, bool | int | str | None]
    today: SendingTodayView


class CompanyAntiBanView(BaseModel):
    """A company's anti-ban defaults (null: the global setting applies)."""

    companyId: str
    company: dict[str, bool | int | str | None]


ANTIBAN_EXAMPLE = {
    "companyId": "acme", "phoneIndex": 0,
    "effective": {"simulateTyping": {"value": True, "source": "company"},
                  "sendJitterMs": {"value": 250, "source": "global"},
                  "dailyMessageCap": {"value": 200, "source": "phone"},
                  "dailyNewChatCap": {"value": 20, "source": "company"},
                  "dailyCapAction": {"value": "wait", "source": "global"},
                  "warmupDays": {"value": 7, "source": "company"},
                  "checkOnWhatsapp": {"value": False, "source": "global"}},
    "phone": {"simulateTyping": None, "sendJitterMs": None, "dailyMessageCap": 200, "dailyNewChatCap": None,
              "dailyCapAction": None, "warmupDays": None, "checkOnWhatsapp": None},
    "company": {"simulateTyping": True, "sendJitterMs": None, "dailyMessageCap": 500, "dailyNewChatCap": 20,
                "dailyCapAction": None, "warmupDays": 7, "checkOnWhatsapp": None},
    "today": {"sentToday": 12, "newChatsToday": 3, "messageCap": 58, "newChatCap": 6, "warmupDay": 2,
              "warmupDays": 7},
}
