"""Number ↔ LID: which phone number a WhatsApp LID stands for, per phone (``contact_lids``).

WhatsApp names some senders by a LID (``<digits>@lid``) instead of their number. Whenever
a message reveals both, the pair is kept; a message that names only one of them is then
completed from what was learnt, so every inbound message and event can carry the number
(when it was ever revealed) and the LID (when WhatsApp uses one for the contact).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.messaging")
LID_SUFFIX = "@lid"


@dataclass(frozen=True)
class ContactIdentity:
    """Who wrote, as far as is known: the number (digits) and the LID (``…@lid``)."""

    number: str | None
    lid: str | None

    @property
    def chat_id(self) -> str:
        """The chat of a one-to-one conversation: the number's when known, else the LID's."""
        if self.number:
            return f"{self.number}@c.us"
        return self.lid or ""


def as_lid(value: str | None) -> str | None:
    """``123@lid`` for ``123@lid`` or a bare ``123`` the caller knows is a LID; None for nothing."""
    if not value:
        return None
    return value if value.endswith(LID_SUFFIX) else f"{value.split('@', 1)[0]}{LID_SUFFIX}"


async def identify(conn: asyncpg.Connection, company_id: str, phone_index: int, *, number: str | None,
                   lid: str | None) -> ContactIdentity:
    """Both identities of a contact: learn a revealed pair, complete a lone LID or number from earlier ones."""
    lid = as_lid(lid)
    number = number if number and number.isdigit() and 5 <= len(number) <= 20 else None
    if lid is not None:
        row = await conn.fetchrow(SQL.learn_lid, company_id, phone_index, lid, number)
        assert row is not None
        return ContactIdentity(row["number"], row["lid"])
    if number:
        return ContactIdentity(number, await conn.fetchval(SQL.lid_of_number, company_id, phone_index, number))
    return ContactIdentity(None, None)
