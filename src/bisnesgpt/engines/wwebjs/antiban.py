"""Sending that does not get numbers banned: daily caps, warm-up, typing, the on-WhatsApp check.

WhatsApp bans numbers that behave like machines: many messages a day, many new chats, from a
number paired yesterday, to numbers that have no WhatsApp. Besides the per-session pacing
with jitter (``pacing.py``), every WhatsApp-Web phone gets (all off by default; each set per
phone, with company defaults and the WWEBJS_* settings as the global ones: ``antiban_settings``):

* daily caps (UTC days): messages sent, and chats opened (a first message to a number that
  never wrote). Over a cap a send waits for the next day — it stays ``queued``, deferred with
  the reason — or fails with ``DAILY_LIMIT_REACHED`` (``daily_cap_action``). Counted
  at send time from the stored messages, so concurrent sends may pass a cap by the worker's
  concurrency at most;
* warm-up: for ``warmup_days`` days after pairing the caps are ``cap x day / days``
  (day 1 is the pairing day; at least 1 a day);
* "typing…" before each text for a time proportional to its length;
* the on-WhatsApp check before the first message to a number (answers cached): a number
  without WhatsApp fails ``NOT_ON_WHATSAPP`` and nothing is sent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ConfigError
from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries
from bisnesgpt.engines.wwebjs.antiban_settings import AntiBanPolicy, global_policy, load_policy
from bisnesgpt.messaging.errors import DeferSend, PermanentSendError
from bisnesgpt.messaging.store import MessageRecord

SQL = load_queries("bisnesgpt.engines.wwebjs")
DAY = timedelta(days=1)


def warmup_cap(cap: int, days: int, day: int) -> int:
    """The cap on ``day`` (1 = the pairing day) of a ``days``-long warm-up (``cap`` from then on)."""
    if cap <= 0 or days <= 0 or day > days:
        return cap
    return max(1, math.ceil(cap * max(day, 1) / days))


def warmup_day(paired_at: datetime | None, now: datetime) -> int | None:
    """Which day since pairing it is (1 = the pairing day); None when the pairing time is not known."""
    if paired_at is None:
        return None
    return (now - paired_at) // DAY + 1


@dataclass(frozen=True)
class SendingToday:
    """A phone's sends today (UTC) against the caps in effect, with the warm-up applied."""

    sent_today: int
    new_chats_today: int
    warmup_day: int | None  # None: not warming up (no warm-up, over, or not paired yet)
    message_cap: int  # 0: no cap
    new_chat_cap: int
    warmup_days: int = 0  # the warm-up's length in effect (0: none)


def today_counts(row: asyncpg.Record, policy: AntiBanPolicy, now: datetime) -> SendingToday:
    """Today's counts of a ``send_limits`` row against ``policy``'s caps on warm-up day."""
    day = warmup_day(row["paired_at"], now)
    days = policy.warmup_days
    in_warmup = day is not None and days > 0 and day <= days
    return SendingToday(sent_today=int(row["sent_today"]), new_chats_today=int(row["new_chats_today"]),
                        warmup_day=day if in_warmup else None,
                        message_cap=warmup_cap(policy.daily_message_cap, days, day or days + 1),
                        new_chat_cap=warmup_cap(policy.daily_new_chat_cap, days, day or days + 1),
                        warmup_days=days)


async def sending_today(conn: asyncpg.Connection, policy: AntiBanPolicy, company_id: str, phone_index: int,
                        now: datetime | None = None) -> SendingToday:
    """What a phone sent today against the caps of ``policy`` (the phone and bot-status answers show it)."""
    row = await conn.fetchrow(SQL.send_limits, company_id, phone_index, None)
    assert row is not None
    return today_counts(row, policy, now or datetime.now(UTC))


async def phone_sending(conn: asyncpg.Connection, settings: Settings, company_id: str,
                        phone_index: int) -> SendingToday:
    """A phone's sends today against the caps in effect for it (its own, its company's or the settings)."""
    return await sending_today(conn, await load_policy(conn, settings, company_id, phone_index), company_id,
                               phone_index)


@dataclass(frozen=True)
class Limits:
    """A phone's counts today against its caps, and whether the message at hand opens a chat."""

    sent_today: int
    new_chats_today: int
    opens_chat: bool
    warmup_day: int | None
    message_cap: int
    new_chat_cap: int

    def exceeded(self) -> str | None:
        """Which cap this message would pass, in words (None: it may go)."""
        if self.message_cap and self.sent_today >= self.message_cap:
            return f"daily message cap reached ({self.sent_today}/{self.message_cap} today{self._day()})"
        if self.new_chat_cap and self.opens_chat and self.new_chats_today >= self.new_chat_cap:
            return f"daily new-chat cap reached ({self.new_chats_today}/{self.new_chat_cap} today{self._day()})"
        return None

    def _day(self) -> str:
        return f", warm-up day {self.warmup_day}" if self.warmup_day is not None else ""


class AntiBan:
    """The checks the WhatsApp-Web engine makes before a send (see the module docstring)."""

    def __init__(self, settings: Settings, db: Database | None, *, clock: type[datetime] = datetime) -> None:
        self.settings = settings
        self.db = db
        self._clock = clock
        self._on_whatsapp: dict[str, tuple[bool, float]] = {}

    @property
    def capped(self) -> bool:
        """Whether any daily cap applies by the global settings (a phone or company may set its own)."""
        return global_policy(self.settings).capped

    async def policy(self, company_id: str, phone_index: int) -> AntiBanPolicy:
        """The controls in effect for the phone: its own ?? its company's ?? the global settings."""
        if self.db is None:
            return global_policy(self.settings)
        async with self.db.connection() as conn:
            return await load_policy(conn, self.settings, company_id, phone_index)

    async def limits(self, message: MessageRecord, policy: AntiBanPolicy | None = None) -> Limits:
        """Today's counts of the message's phone against its caps (with the warm-up applied)."""
        if self.db is None:
            raise ConfigError("the daily caps and the on-WhatsApp check need the database")
        policy = policy or await self.policy(message.company_id, message.phone_index)
        row = await self.db.fetchrow(SQL.send_limits, message.company_id, message.phone_index, message.chat_id)
        assert row is not None
        counts = today_counts(row, policy, self._clock.now(UTC))
        return Limits(sent_today=counts.sent_today, new_chats_today=counts.new_chats_today,
                      opens_chat=bool(row["opens_chat"]), warmup_day=counts.warmup_day,
                      message_cap=counts.message_cap, new_chat_cap=counts.new_chat_cap)

    async def check_caps(self, message: MessageRecord, policy: AntiBanPolicy | None = None) -> None:
        """Defer (until the next UTC day) or fail a message over its phone's daily caps."""
        policy = policy or await self.policy(message.company_id, message.phone_index)
        if not policy.capped:
            return
        over = (await self.limits(message, policy)).exceeded()
        if over is None:
            return
        if policy.daily_cap_action == "fail":
            raise PermanentSendError(f"{over}; raise the phone's daily caps (`bisnesgpt phones set`, PATCH "
                                     f"/api/sessions/{message.company_id}/{message.phone_index}/antiban, or "
                                     "WWEBJS_DAILY_MESSAGE_CAP / WWEBJS_DAILY_NEW_CHAT_CAP) or send tomorrow",
                                     code="DAILY_LIMIT_REACHED", title="Daily sending limit reached",
                                     details={"detail": over})
        now = self._clock.now(UTC)
        tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + DAY
        raise DeferSend(f"{over}: waiting for the next day (UTC)",
                        delay_ms=int((tomorrow - now).total_seconds() * 1000) + 1000)

    def cached(self, number: str) -> bool | None:
        """A recent answer of the on-WhatsApp check for ``number`` (None: none)."""
        found = self._on_whatsapp.get(number)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def remember(self, answers: dict[str, bool]) -> None:
        """Keep on-WhatsApp answers for WWEBJS_ON_WHATSAPP_CACHE_SECONDS."""
        until = time.monotonic() + self.settings.wwebjs_on_whatsapp_cache_seconds
        self._on_whatsapp.update({number: (on, until) for number, on in answers.items()})

    async def opens_chat(self, message: MessageRecord, policy: AntiBanPolicy | None = None) -> bool:
        """Whether the message is the first to a number that never wrote (a 1:1 chat only)."""
        if not message.chat_id.endswith("@c.us"):
            return False
        return (await self.limits(message, policy)).opens_chat

    def typing_seconds(self, text: str | None, wanted: bool | None = None,
                       policy: AntiBanPolicy | None = None) -> float:
        """How long "typing…" shows before a text (0: not at all); ``wanted``: the message's own choice."""
        simulate = (policy or global_policy(self.settings)).simulate_typing
        if not (simulate if wanted is None else wanted) or not text:
            return 0.0
        return min(len(text) * self.settings.wwebjs_typing_ms_per_char, self.settings.wwebjs_typing_max_ms) / 1000
