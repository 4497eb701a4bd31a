"""The emulator's in-memory world: phones, limits, media, templates, rules, and the request log.

Everything is per emulator process and lives in memory (it is a development and test
stand-in); the request log (``record.py``) is what tests, benchmarks and the chaos checker read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.sandbox.jsonvalues import as_float, as_int, as_text, update_settings
from bisnesgpt.sandbox.meta_emulator.record import RequestLog

RuleMode = Literal["sync", "webhook"]
RULE_MODES: dict[str, RuleMode] = {"sync": "sync", "webhook": "webhook"}

# A conversation (Meta's billing window with one contact, per category) lasts 24 hours.
CONVERSATION_SECONDS = 86_400
TEMPLATE_CATEGORIES = ("marketing", "utility", "authentication")
# The sample templates' categories (others default to marketing, or what the admin API says).
DEFAULT_TEMPLATE_CATEGORIES: dict[str, str] = {
    "hello_world": "utility", "sample_shipping_confirmation": "utility", "sample_issue_resolution": "utility",
    "sample_flight_confirmation": "utility", "sample_movie_ticket_confirmation": "utility",
    "sample_purchase_feedback": "marketing", "sample_happy_hour_announcement": "marketing",
}

DEFAULT_TEMPLATES: dict[str, set[str] | None] = {
    # Every WhatsApp Business Account starts with Meta's sample templates.
    "hello_world": {"en_US"},
    "sample_shipping_confirmation": None,
    "sample_issue_resolution": None,
    "sample_flight_confirmation": None,
    "sample_movie_ticket_confirmation": None,
    "sample_purchase_feedback": None,
    "sample_happy_hour_announcement": None,
}


def new_wamid() -> str:
    """A message id shaped like Meta's (``wamid.`` + base64)."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()


def new_object_id() -> str:
    """Graph object ids are digit strings (media ids, conversation ids)."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def digits(value: object) -> str:
    """Only the digits of a phone number as given (``"+60 12-345"`` -> ``"6012345"``; None -> ``""``)."""
    return "".join(ch for ch in str(value or "") if ch.isdigit())


@dataclass(frozen=True)
class Billing:
    """What a sent message's statuses say about its billing: the conversation and the pricing."""

    conversation_id: str
    expiration: int  # Unix seconds
    category: str  # service | marketing | utility | authentication
    billable: bool


@dataclass
class EmulatedPhone:
    """A business phone number the emulator knows, with its limits and their state."""

    phone_number_id: str
    access_token: str | None = None
    d360_api_key: str | None = None
    display_phone_number: str = "15550000000"
    waba_id: str = "100000000000001"
    # The phone number object Meta answers on GET /{version}/{phone_number_id} (PhoneNumberInfo).
    verified_name: str = "Emulated Business"
    quality_rating: str = "GREEN"  # GREEN | YELLOW | RED | NA
    code_verification_status: str = "VERIFIED"  # VERIFIED | UNVERIFIED
    name_status: str = "APPROVED"  # APPROVED | AVAILABLE_WITHOUT_REVIEW | DECLINED | EXPIRED | PENDING_REVIEW | NONE
    status: str = "CONNECTED"  # CONNECTED | DISCONNECTED | FLAGGED | PENDING | RESTRICTED | UNVERIFIED
    messages_per_second: float = 80.0
    pair_interval_ms: float = 6_000.0
    pair_burst: int = 45
    _tokens: float = field(default=-1.0, repr=False)
    _refilled: float = field(default=0.0, repr=False)
    _pair_tat: dict[str, float] = field(default_factory=dict, repr=False)

    def take_throughput_token(self, now: float) -> bool:
        """Token bucket: ``messages_per_second`` per second, bursts of up to one second's worth."""
        capacity = max(1.0, self.messages_per_second)
        if self._tokens < 0:
            self._tokens, self._refilled = capacity, now
        self._tokens = min(capacity, self._tokens + (now - self._refilled) * self.messages_per_second)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def take_pair_slot(self, wa_id: str, now: float) -> bool:
        """Pair rate (GCRA): one message per ``pair_interval_ms`` to one user, ``pair_burst`` at once."""
        if self.pair_interval_ms <= 0:
            return True
        interval = self.pair_interval_ms / 1000
        tat = max(self._pair_tat.get(wa_id, now), now)
        if tat - (self.pair_burst - 1) * interval > now:
            return False
        self._pair_tat[wa_id] = tat + interval
        return True

    def public(self) -> JsonObject:
        """The phone as the admin API shows it: every setting, none of the limiters' state."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def update(self, values: JsonObject) -> None:
        """Apply the settings present in ``values`` (admin API names); the throughput bucket refills."""
        for key in ("access_token", "d360_api_key", "display_phone_number", "waba_id"):
            if key in values:
                setattr(self, key, as_text(values[key]))
        for key in ("verified_name", "quality_rating", "code_verification_status", "name_status", "status"):
            if values.get(key) is not None:
                setattr(self, key, str(values[key]))
        for key in ("messages_per_second", "pair_interval_ms"):
            if key in values:
                setattr(self, key, as_float(values[key]))
        if "pair_burst" in values:
            self.pair_burst = max(1, as_int(values["pair_burst"]))
        self._tokens = -1.0


@dataclass
class StoredMedia:
    """An uploaded file, kept for the phone that uploaded it until deleted."""

    id: str
    phone_number_id: str
    content: bytes
    mime_type: str
    created: float

    @property
    def sha256_hex(self) -> str:
        """The digest as the media object's ``sha256`` (hex)."""
        return hashlib.sha256(self.content).hexdigest()

    @property
    def sha256_b64(self) -> str:
        """The digest as an inbound media message's ``sha256`` (base64)."""
        return base64.b64encode(hashlib.sha256(self.content).digest()).decode()


@dataclass
class ErrorRule:
    """Answer (``sync``) or fail by webhook (``webhook``) matching sends with ``code``."""

    id: int
    code: int
    mode: RuleMode = "sync"
    phone_number_id: str | None = None
    to: str | None = None
    type: str | None = None
    times: int | None = None  # None: every matching send
    details: str | None = None
    usage_minutes: int | None = None  # X-Business-Use-Case-Usage estimated_time_to_regain_access
    hits: int = 0

    def matches(self, phone_number_id: str, wa_id: str, kind: str) -> bool:
        """Whether a send of ``kind`` from the phone to ``wa_id`` is one this rule fails (and it is not used up)."""
        if self.times is not None and self.hits >= self.times:
            return False
        return ((self.phone_number_id is None or self.phone_number_id == phone_number_id)
                and (self.to is None or digits(self.to) == wa_id)
                and (self.type is None or self.type == kind))


@dataclass
class WebhookConfig:
    """Where and how status/inbound webhooks go back, and how they are disordered."""

    url: str | None = None
    app_secret: str | None = None
    profile: str = "meta"  # meta | d360
    token: str | None = None  # d360: sent as X-Webhook-Token
    sent_delay_ms: float = 50.0
    delivered_delay_ms: float = 250.0
    read_delay_ms: float = 800.0
    jitter_ms: float = 0.0
    shuffle: bool = False
    duplicate_rate: float = 0.0
    read_rate: float = 1.0
    retry_seconds: float = 600.0
    timeout_seconds: float = 10.0

    def update(self, values: JsonObject) -> None:
        """Apply ``PATCH /_emulator/config``'s ``webhook`` object; an unknown name is a KeyError."""
        update_settings(self, values)

    def public(self) -> JsonObject:
        """The settings as the admin API shows them, secrets masked."""
        data: JsonObject = asdict(self)
        data["app_secret"] = "***" if self.app_secret else None
        data["token"] = "***" if self.token else None
        return data


@dataclass
class EmulatorState:
    """Everything one emulator process knows: phones, media, templates, contacts, rules, settings, log."""

    phones: dict[str, EmulatedPhone] = field(default_factory=dict)
    media: dict[str, StoredMedia] = field(default_factory=dict)
    templates: dict[str, set[str] | None] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    template_categories: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATE_CATEGORIES))
    # (phone number id, wa_id, category) -> (conversation id, expiration): Meta's billing windows.
    conversations: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)
    silent_contacts: set[tuple[str, str]] = field(default_factory=set)  # (phone id or "*", wa_id)
    rules: list[ErrorRule] = field(default_factory=list)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    requests: RequestLog = field(default_factory=RequestLog)
    media_url_ttl: float = 300.0
    url_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    default_messages_per_second: float = 80.0
    # Each POST …/messages waits latency_ms plus a random 0..latency_jitter_ms before it is
    # handled (a network path whose delay varies, so sends in flight together may overtake).
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    _next_rule: int = 1

    def request_delay_s(self) -> float:
        """How long the next send request waits before it is handled (seconds)."""
        jitter = random.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms > 0 else 0.0  # noqa: S311
        return max(0.0, self.latency_ms + jitter) / 1000

    def add_phone(self, phone_number_id: str, **values: JsonValue) -> EmulatedPhone:
        """Create the phone (at the default throughput) if new, then apply ``values`` to it."""
        phone = self.phones.get(phone_number_id)
        if phone is None:
            phone = EmulatedPhone(phone_number_id, messages_per_second=self.default_messages_per_second)
            self.phones[phone_number_id] = phone
        phone.update(values)
        return phone

    def phone_by_d360_key(self, key: str) -> EmulatedPhone | None:
        """The phone whose 360dialog API key this is (compared in constant time)."""
        for phone in self.phones.values():
            if phone.d360_api_key and hmac.compare_digest(phone.d360_api_key, key):
                return phone
        return None

    def add_rule(self, values: JsonObject) -> ErrorRule:
        """A new error rule from ``POST /_emulator/rules``; a missing code or a bad mode is refused."""
        code, times, usage_minutes = as_int(values["code"]), values.get("times"), values.get("usage_minutes")
        mode = RULE_MODES.get(str(values.get("mode") or "sync"))
        rule_times = as_int(times) if times is not None else None
        rule_usage = as_int(usage_minutes) if usage_minutes is not None else None
        if mode is None:
            raise ValueError("mode must be 'sync' or 'webhook'")
        rule = ErrorRule(id=self._next_rule, code=code, mode=mode,
                         phone_number_id=as_text(values.get("phone_number_id")), to=as_text(values.get("to")),
                         type=as_text(values.get("type")), times=rule_times, details=as_text(values.get("details")),
                         usage_minutes=rule_usage)
        self._next_rule += 1
        self.rules.append(rule)
        return rule

    def match_rule(self, phone_number_id: str, wa_id: str, kind: str) -> ErrorRule | None:
        """The first rule this send matches, counted as a hit."""
        for rule in self.rules:
            if rule.matches(phone_number_id, wa_id, kind):
                rule.hits += 1
                return rule
        return None

    def template_known(self, name: str, language: str) -> bool:
        """Whether the template exists in that language (None languages: in every language)."""
        if name not in self.templates:
            return False
        languages = self.templates[name]
        return languages is None or language in languages

    def add_template(self, name: str, languages: set[str] | None, category: str) -> str:
        """An approved template (in every language when None) of ``category``; ValueError for an unknown one."""
        category = category.lower()
        if category not in TEMPLATE_CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(TEMPLATE_CATEGORIES)}")
        self.templates[name] = languages
        self.template_categories[name] = category
        return category

    def billing(self, phone_number_id: str, wa_id: str, template: str | None, *, now: float) -> Billing:
        """How a message to ``wa_id`` is billed: a template in its category, anything else as a free
        ``service`` message; the conversation of that category open with the contact, or a new one."""
        category = self.template_categories.get(template, "marketing") if template is not None else "service"
        key = (phone_number_id, wa_id, category)
        open_one = self.conversations.get(key)
        if open_one is None or open_one[1] <= now:
            open_one = (new_object_id(), int(now) + CONVERSATION_SECONDS)
            self.conversations[key] = open_one
        return Billing(conversation_id=open_one[0], expiration=open_one[1], category=category,
                       billable=template is not None)

    def has_written(self, phone_number_id: str, wa_id: str) -> bool:
        """Whether the 24-hour window is open: everyone has written unless marked silent (per phone or all)."""
        return (phone_number_id, wa_id) not in self.silent_contacts and ("*", wa_id) not in self.silent_contacts

    def set_written(self, phone_number_id: str | None, wa_id: str, written: bool) -> None:
        """Mark whether the contact has written to one phone (None: to every phone)."""
        key = (phone_number_id or "*", wa_id)
        if written:
            self.silent_contacts.discard(key)
            self.silent_contacts.discard(("*", wa_id))
        else:
            self.silent_contacts.add(key)

    def store_media(self, phone_number_id: str, content: bytes, mime_type: str) -> StoredMedia:
        """Keep an upload under a new Graph object id."""
        media = StoredMedia(new_object_id(), phone_number_id, content, mime_type, time.time())
        self.media[media.id] = media
        return media

    def media_query(self, media_id: str, expires: int) -> str:
        """The query string of a download URL: the id, its expiry and an HMAC over both."""
        digest = hmac.new(self.url_key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"mid={media_id}&ext={expires}&hash={digest}"

    def media_url_valid(self, media_id: str, expires: int, digest: str) -> bool:
        """Whether a download URL is one this emulator signed and has not expired."""
        expected = self.media_query(media_id, expires).rsplit("hash=", 1)[1]
        return hmac.compare_digest(expected, digest) and expires >= time.time()
