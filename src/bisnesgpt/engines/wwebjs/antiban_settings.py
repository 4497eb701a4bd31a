"""The anti-ban controls of each phone: its own, else its company's defaults, else the WWEBJS_* settings.

Stored in ``wwebjs_antiban_settings`` (one row per company for its defaults, one per phone
that sets anything; a NULL column inherits). The effective value of each control is the
phone's ?? the company's ?? the global setting (``wwebjs_<control>``), and says which of the
three it came from. Read on every send (one indexed query), so a change applies to the next
message without a restart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Literal, get_args

import asyncpg

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import ValidationFailed
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.engines.wwebjs")

CapAction = Literal["wait", "fail"]
Source = Literal["phone", "company", "global"]
CAP_ACTIONS: tuple[CapAction, ...] = get_args(CapAction)
# The largest values accepted (a typo of a zero too many is refused rather than obeyed).
MAX_DAILY_CAP = 1_000_000
MAX_JITTER_MS = 60_000
MAX_WARMUP_DAYS = 365
INTEGER_LIMITS = {"send_jitter_ms": MAX_JITTER_MS, "daily_message_cap": MAX_DAILY_CAP,
                  "daily_new_chat_cap": MAX_DAILY_CAP, "warmup_days": MAX_WARMUP_DAYS}


@dataclass(frozen=True)
class AntiBanOverrides:
    """The controls one phone (or one company, as its defaults) sets; None: inherit."""

    simulate_typing: bool | None = None
    send_jitter_ms: int | None = None
    daily_message_cap: int | None = None
    daily_new_chat_cap: int | None = None
    daily_cap_action: CapAction | None = None
    warmup_days: int | None = None
    check_on_whatsapp: bool | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record | None) -> AntiBanOverrides:
        """The overrides of a ``wwebjs_antiban_settings`` row (none for no row)."""
        if row is None:
            return cls()
        return cls(**{name: row[name] for name in CONTROLS})

    def changed(self, changes: dict[str, object]) -> AntiBanOverrides:
        """These overrides with ``changes`` applied (a None value clears one), each value checked."""
        unknown = sorted(set(changes) - set(CONTROLS))
        if unknown:
            raise ValidationFailed(f"unknown anti-ban control {', '.join(unknown)}; the controls are "
                                   f"{', '.join(CONTROLS)}")
        for name, value in changes.items():
            check(name, value)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def as_json(self) -> dict[str, bool | int | str | None]:
        """The overrides by control name (None: inherited)."""
        return {name: getattr(self, name) for name in CONTROLS}


CONTROLS: tuple[str, ...] = tuple(f.name for f in fields(AntiBanOverrides))


def check(name: str, value: object) -> None:
    """Refuse a value a control cannot take (ValidationFailed says the allowed range)."""
    if value is None:
        return
    if name in INTEGER_LIMITS:
        top = INTEGER_LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ValidationFailed(f"{name} must be a whole number from 0 to {top} (0: off), not {value!r}")
    elif name == "daily_cap_action":
        if value not in CAP_ACTIONS:
            raise ValidationFailed(f"daily_cap_action must be one of {', '.join(CAP_ACTIONS)}, not {value!r}")
    elif not isinstance(value, bool):
        raise ValidationFailed(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True)
class AntiBanPolicy:
    """The controls in effect for one phone, and where each came from."""

    simulate_typing: bool
    send_jitter_ms: int
    daily_message_cap: int
    daily_new_chat_cap: int
    daily_cap_action: CapAction
    warmup_days: int
    check_on_whatsapp: bool
    sources: dict[str, Source] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def capped(self) -> bool:
        """Whether any daily cap applies."""
        return bool(self.daily_message_cap or self.daily_new_chat_cap)


def global_policy(settings: Settings) -> AntiBanPolicy:
    """The controls as the WWEBJS_* settings say (no phone or company sets anything)."""
    return resolve(settings, AntiBanOverrides(), AntiBanOverrides())


def resolve(settings: Settings, phone: AntiBanOverrides, company: AntiBanOverrides) -> AntiBanPolicy:
    """Each control: the phone's ?? the company's ?? the global setting."""
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    for name in CONTROLS:
        own, default = getattr(phone, name), getattr(company, name)
        if own is not None:
            values[name], sources[name] = own, "phone"
        elif default is not None:
            values[name], sources[name] = default, "company"
        else:
            values[name], sources[name] = getattr(settings, f"wwebjs_{name}"), "global"
    return AntiBanPolicy(**values, sources=sources)  # type: ignore[arg-type]


async def load_overrides(conn: asyncpg.Connection, company_id: str,
                         phone_index: int) -> tuple[AntiBanOverrides, AntiBanOverrides]:
    """What phone ``phone_index`` and its company (as defaults) set: (phone, company)."""
    rows = await conn.fetch(SQL.antiban_overrides, company_id, phone_index)
    by_scope = {row["phone_index"]: row for row in rows}
    return AntiBanOverrides.from_row(by_scope.get(phone_index)), AntiBanOverrides.from_row(by_scope.get(None))


async def load_policy(conn: asyncpg.Connection, settings: Settings, company_id: str, phone_index: int) -> AntiBanPolicy:
    """The controls in effect for one phone."""
    phone, company = await load_overrides(conn, company_id, phone_index)
    return resolve(settings, phone, company)


async def company_overrides(conn: asyncpg.Connection,
                            company_id: str | None) -> dict[tuple[str, int | None], AntiBanOverrides]:
    """Every row of a company (None: of all): (company, phone index or None for the defaults) -> overrides."""
    rows = await conn.fetch(SQL.company_antiban_overrides, company_id)
    return {(row["company_id"], row["phone_index"]): AntiBanOverrides.from_row(row) for row in rows}


async def save_overrides(conn: asyncpg.Connection, company_id: str, phone_index: int | None,
                         overrides: AntiBanOverrides) -> None:
    """Store what a phone (``phone_index``) or its company (None) sets; nothing set: the row goes."""
    if overrides == AntiBanOverrides():
        await conn.execute(SQL.delete_antiban_overrides, company_id, phone_index)
        return
    await conn.execute(SQL.save_antiban_overrides, company_id, phone_index,
                       *(getattr(overrides, name) for name in CONTROLS))
