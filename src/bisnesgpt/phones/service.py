"""Changing a phone's configuration: one place for the API routes and the CLI.

A provider identity is a claim: before a Cloud API or 360dialog phone is stored, ``claims``
(a ``ClaimCheck``; the engine's asks the provider) proves that the credentials given own the
number — the access token reads the phone number (in the WABA given), the 360dialog key
names it. Nothing is stored when the proof fails. Only trusted seeding (the demo's own
emulator world, before the emulator runs) passes ``claims=None``.

Secrets (Meta access tokens, 360dialog API keys) are encrypted with ``ENCRYPTION_KEY``
(bound to their phone's row, see ``core/crypto.py``) before they reach the database and are never returned. Every
change is announced through ``on_change`` (the router's invalidation publish) after it
committed, so all API instances route the next message by the new configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from bisnesgpt.config.engines import MAX_PHONE_MESSAGES_PER_SECOND
from bisnesgpt.core.crypto import SecretBox, SecretColumn
from bisnesgpt.core.errors import ConfigError, Conflict, NotFound, ProviderIdentityTaken, ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.queues import CONNECTION_TYPE_QUEUES
from bisnesgpt.phones import store
from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN, PHONE_CONFIG_STATUSES, PhoneConfig

log = logging.getLogger(__name__)

CONNECTION_TYPES = tuple(sorted(t for t in CONNECTION_TYPE_QUEUES if t is not None))
META_TYPES = ("meta_direct", "meta_embedded")
# The phones the meta engine sends for, each paced by its own rate (``engines/meta/pacing.py``).
PER_PHONE_RATE_TYPES = (*META_TYPES, "360dialog")
RATE_SETTING = "messages_per_second"

# The unique indexes of provider identities: (what the identity is, its column, the request field).
IDENTITY_INDEXES = {
    "idx_phone_configs_meta_phone_number_id": ("Meta phone number id", "meta_phone_number_id", "phoneNumberId"),
    "idx_phone_configs_dialog360_channel_id": ("360dialog channel id", "dialog360_channel_id", "channelId"),
}

ChangeListener = Callable[[str, int, str | None], Awaitable[None]]


@dataclass(frozen=True)
class ProvenNumber:
    """What the provider confirmed about a claimed number (None: it did not say)."""

    phone_number_id: str
    waba_id: str | None = None
    display_phone_number: str | None = None


class ClaimCheck(Protocol):
    """Asks the provider whether credentials own a number; raises ``ClaimNotProven`` when they do not."""

    async def prove_meta(self, *, phone_number_id: str, waba_id: str | None, access_token: str) -> ProvenNumber:
        """The number, if ``access_token`` reads ``phone_number_id`` (and it is a phone of ``waba_id``)."""
        ...

    async def prove_d360(self, *, api_key: str) -> ProvenNumber:
        """The number behind a 360dialog API key, if 360dialog accepts the key."""
        ...


async def _no_listener(_company_id: str, _phone_index: int, _connection_type: str | None) -> None:
    return None


class PhoneConfigService:
    """Connect, change and remove phones, with credentials encrypted and every change announced."""

    def __init__(self, db: Database, box: SecretBox | None, on_change: ChangeListener = _no_listener, *,
                 claims: ClaimCheck | None) -> None:
        self.db = db
        self.box = box
        self.on_change = on_change
        self.claims = claims

    def encrypt(self, column: SecretColumn, company_id: str, phone_index: int, secret: str) -> str:
        """A credential as stored in ``column`` of that phone (ConfigError when no ``ENCRYPTION_KEY`` is set)."""
        if self.box is None:
            raise ConfigError("invalid setting ENCRYPTION_KEY: needed to store credentials (64 hex characters)")
        return self.box.encrypt(secret, column.at(company_id, phone_index))

    async def connect_meta(self, company_id: str, phone_index: int, *, phone_number_id: str, waba_id: str,
                           access_token: str, display_phone_number: str | None = None,
                           connection_type: str = "meta_direct") -> PhoneConfig:
        """A Cloud API phone (``meta_direct`` or ``meta_embedded``) with its encrypted token."""
        if connection_type not in META_TYPES:
            raise ValidationFailed(f"connectionType must be one of {', '.join(META_TYPES)}")
        if self.claims is not None:
            await self._require_company(company_id)
            proven = await self.claims.prove_meta(phone_number_id=phone_number_id, waba_id=waba_id,
                                                  access_token=access_token)
            display_phone_number = display_phone_number or proven.display_phone_number
        fields: dict[str, str | None] = {
            "meta_phone_number_id": phone_number_id,
            "meta_waba_id": waba_id,
            "meta_access_token_encrypted": self.encrypt(META_ACCESS_TOKEN, company_id, phone_index, access_token),
        }
        if display_phone_number is not None:
            fields["display_phone_number"] = display_phone_number
        return await self.save(company_id, phone_index, connection_type=connection_type, fields=fields,
                               initial_status=True)

    async def onboard_360dialog(self, company_id: str, phone_index: int, *, client_id: str, channel_id: str,
                                api_key: str | None = None, display_phone_number: str | None = None) -> PhoneConfig:
        """A 360dialog phone (its client and channel ids, and its API key encrypted).

        With ``claims`` the key is required and checked at 360dialog; the number it names is
        stored as the phone's ``meta_phone_number_id`` (unique: one number, one phone).
        """
        fields: dict[str, str | None] = {"dialog360_client_id": client_id, "dialog360_channel_id": channel_id}
        if self.claims is not None:
            await self._require_company(company_id)
            if not api_key:
                raise ValidationFailed(
                    "apiKey is required: 360dialog must confirm the number behind the channel before it is stored "
                    "(the D360-API-KEY of this channel, from the 360dialog hub)",
                    errors=[{"field": "apiKey", "message": "required to prove the claim", "type": "missing"}])
            proven = await self.claims.prove_d360(api_key=api_key)
            fields["meta_phone_number_id"] = proven.phone_number_id
            if proven.waba_id is not None:
                fields["meta_waba_id"] = proven.waba_id
        if api_key is not None:
            fields["api_key_encrypted"] = self.encrypt(D360_API_KEY, company_id, phone_index, api_key)
        if display_phone_number is not None:
            fields["display_phone_number"] = display_phone_number
        return await self.save(company_id, phone_index, connection_type="360dialog", fields=fields,
                               initial_status=True)

    async def _require_company(self, company_id: str) -> None:
        async with self.db.connection() as conn:
            if not await store.company_exists(conn, company_id):
                raise NotFound(f"company {company_id!r} not found")

    async def save(self, company_id: str, phone_index: int, *, connection_type: str,
                   fields: dict[str, str | None], status: str = "pending", initial_status: bool = False) -> PhoneConfig:
        """Create or update a phone (fields not given keep their values) and announce it."""
        if connection_type not in CONNECTION_TYPES:
            raise ValidationFailed(
                f"unknown connection type {connection_type!r}; expected one of {', '.join(CONNECTION_TYPES)}",
                errors=[{"field": "connectionType", "message": f"unknown value {connection_type!r}",
                         "type": "enum"}])
        try:
            async with self.db.transaction() as conn:
                config = await store.upsert_phone(conn, company_id, phone_index, connection_type=connection_type,
                                                  status=status, fields=fields)
                if initial_status:
                    # Cloud API phones have no session to pair: "pending" until the engine
                    # confirms the credentials.
                    await store.set_phone_status(conn, company_id, phone_index, "pending",
                                                 connection_type=connection_type,
                                                 process_name=config.process_name)
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(f"company {company_id!r} not found") from exc
        except asyncpg.UniqueViolationError as exc:
            raise identity_taken(exc, fields) from exc
        log.info("phone %s/%d configured as %s", company_id, phone_index, connection_type)
        await self.on_change(company_id, phone_index, connection_type)
        return config

    async def update(self, company_id: str, phone_index: int, *, connection_type: str | None = None,
                     status: str | None = None, fields: dict[str, str | None] | None = None) -> PhoneConfig:
        """Change some settings of an existing phone (404 if there is none)."""
        async with self.db.connection() as conn:
            current = await store.get_phone(conn, company_id, phone_index)
        if current is None:
            raise NotFound(f"no phone {phone_index} configured for company {company_id!r}")
        if status is not None and status not in PHONE_CONFIG_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(PHONE_CONFIG_STATUSES)}")
        return await self.save(company_id, phone_index, connection_type=connection_type or current.connection_type
                               or "wwebjs", fields=fields or {}, status=status or current.status or "pending")

    async def set_rate_limit(self, company_id: str, phone_index: int, messages_per_second: float | None) -> PhoneConfig:
        """Pace a Cloud API / 360dialog phone at its own rate; None: back to the default (coexistence aware).

        The meta engine reads it with the phone's row, which it caches for at most 5 s
        (``engines/meta/phones.py``): a change applies to sends from then on, without a restart.
        """
        if messages_per_second is not None and not 0 < messages_per_second <= MAX_PHONE_MESSAGES_PER_SECOND:
            raise ValidationFailed(
                f"messagesPerSecond must be above 0 and at most {MAX_PHONE_MESSAGES_PER_SECOND:,}; null: the default",
                errors=[{"field": "messagesPerSecond", "type": "range",
                         "message": f"give a number in (0, {MAX_PHONE_MESSAGES_PER_SECOND}] or null"}])
        async with self.db.transaction() as conn:
            current = await store.get_phone(conn, company_id, phone_index)
            if current is None:
                raise NotFound(f"no phone {phone_index} configured for company {company_id!r}")
            if (current.connection_type or "wwebjs") not in PER_PHONE_RATE_TYPES:
                raise ValidationFailed(
                    f"phone {phone_index} is a WhatsApp-Web phone: sessions share WWEBJS_MAX_MESSAGES_PER_SECOND; "
                    "limit this phone with its anti-ban daily caps (bisnesgpt phones set --daily-message-cap)",
                    errors=[{"field": "messagesPerSecond", "type": "value",
                             "message": "only Cloud API and 360dialog phones have their own rate"}])
            config = await store.set_phone_setting(conn, company_id, phone_index, RATE_SETTING, messages_per_second)
        if config is None:  # removed meanwhile
            raise NotFound(f"no phone {phone_index} configured for company {company_id!r}")
        log.info("phone %s/%d rate limit set to %s", company_id, phone_index, messages_per_second or "the default")
        await self.on_change(company_id, phone_index, config.connection_type)
        return config

    async def remove(self, company_id: str, phone_index: int) -> None:
        """Delete a phone's configuration and status (its next message answers 404), and announce it."""
        async with self.db.transaction() as conn:
            deleted = await store.delete_phone(conn, company_id, phone_index)
        if not deleted:
            raise NotFound(f"no phone {phone_index} configured for company {company_id!r}")
        log.info("phone %s/%d removed", company_id, phone_index)
        await self.on_change(company_id, phone_index, None)


def identity_taken(exc: asyncpg.UniqueViolationError, fields: dict[str, str | None]) -> Conflict:
    """The error for a provider identity another phone holds (which one; never whose: that is
    another tenant's business)."""
    known = IDENTITY_INDEXES.get(exc.constraint_name or "")
    if known is None:
        return Conflict("this phone's configuration conflicts with another phone's")
    what, column, field = known
    value = fields.get(column)
    return ProviderIdentityTaken(
        f"the {what} {value!r} is already connected to another phone; a provider identity belongs to one phone "
        f"of one company. Remove it from the phone that has it (DELETE /api/whatsapp/config/{{companyId}}/"
        "{phoneIndex}), or, if that phone is not yours, ask the operator: the provider confirms who owns a number",
        errors=[{"field": field, "message": f"{what} already connected to another phone", "type": "unique"}],
        extra={"identity": column, "value": value})
