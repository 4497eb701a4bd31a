"""Contact cards: the Cloud API's ``contacts`` objects ↔ the vCards WhatsApp Web sends and receives.

A WhatsApp contact card is a vCard 3.0 whose ``TEL`` lines carry ``waid=<digits>`` (the
number on WhatsApp, what makes "Message" appear on the card). Outgoing cards are built from
the Cloud API shape the API accepts (so one body works on both engines); incoming cards are
read back into that shape for the ``message.inbound`` event.
"""

from __future__ import annotations

from bisnesgpt.core.jsontypes import JsonObject, JsonValue
from bisnesgpt.engines.wwebjs.driver import ContactCard


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace("\\,", ",").replace("\\;", ";").replace("\\\\", "\\")


def _objects(value: JsonValue) -> list[JsonObject]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: JsonValue) -> str:
    return value if isinstance(value, str) else ""


def card_of(contact: JsonObject) -> ContactCard:
    """The vCard of one Cloud API ``contacts`` entry (name, phones with wa_id, emails, org, urls)."""
    given = contact.get("name")
    name: JsonObject = given if isinstance(given, dict) else {}
    formatted = _text(name.get("formatted_name")) or " ".join(
        _text(name.get(k)) for k in ("first_name", "last_name") if name.get(k)) or "Contact"
    lines = ["BEGIN:VCARD", "VERSION:3.0",
             f"N:{_escape(_text(name.get('last_name')))};{_escape(_text(name.get('first_name')))};"
             f"{_escape(_text(name.get('middle_name')))};{_escape(_text(name.get('prefix')))};"
             f"{_escape(_text(name.get('suffix')))}",
             f"FN:{_escape(formatted)}"]
    org = contact.get("org")
    if isinstance(org, dict) and org.get("company"):
        lines.append(f"ORG:{_escape(_text(org.get('company')))};{_escape(_text(org.get('department')))}")
        if org.get("title"):
            lines.append(f"TITLE:{_escape(_text(org.get('title')))}")
    phones: list[str] = []
    for phone in _objects(contact.get("phones")):
        number = _text(phone.get("phone")) or _text(phone.get("wa_id"))
        wa_id = _text(phone.get("wa_id")) or "".join(ch for ch in number if ch.isdigit())
        kind = (_text(phone.get("type")) or "CELL").upper()
        lines.append(f"TEL;type={kind};waid={wa_id}:{number or '+' + wa_id}")
        phones.append(wa_id)
    for email in _objects(contact.get("emails")):
        kind = (_text(email.get("type")) or "INTERNET").upper()
        lines.append(f"EMAIL;type={kind}:{_escape(_text(email.get('email')))}")
    for url in _objects(contact.get("urls")):
        lines.append(f"URL:{_escape(_text(url.get('url')))}")
    if contact.get("birthday"):
        lines.append(f"BDAY:{_text(contact.get('birthday'))}")
    lines.append("END:VCARD")
    return ContactCard(name=formatted, vcard="\n".join(lines) + "\n", numbers=tuple(phones))


def contact_of(card: ContactCard) -> JsonObject:
    """A received card in the Cloud API's ``contacts`` shape: ``name.formatted_name``, ``phones``
    (``phone``, ``wa_id`` when the card names one, ``type``), ``emails``, ``org``."""
    phones: list[JsonValue] = []
    emails: list[JsonValue] = []
    contact: JsonObject = {"name": {"formatted_name": card.name}}
    for raw in card.vcard.splitlines():
        head, sep, value = raw.partition(":")
        if not sep:
            continue
        field, *params = head.split(";")
        options = {k.lower(): v for k, _, v in (p.partition("=") for p in params)}
        field = field.upper()
        if field == "FN" and value:
            contact["name"] = {"formatted_name": _unescape(value)}
        elif field == "TEL":
            phone: JsonObject = {"phone": value, "type": options.get("type", "CELL").upper()}
            if options.get("waid"):
                phone["wa_id"] = options["waid"]
            phones.append(phone)
        elif field == "EMAIL":
            emails.append({"email": _unescape(value), "type": options.get("type", "INTERNET").upper()})
        elif field == "ORG" and value:
            contact["org"] = {"company": _unescape(value.split(";")[0])}
    if phones:
        contact["phones"] = phones
    if emails:
        contact["emails"] = emails
    return contact
