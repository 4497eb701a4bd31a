"""``bisnesgpt phones add|list|set|remove``: a company's phones, how each connects, its anti-ban controls.

Credentials (``--access-token``, ``--api-key``) are encrypted with ``ENCRYPTION_KEY``
before they are stored and are never printed. Pass ``-`` to read one from stdin instead of
the command line (which shells keep in their history). A Cloud API or 360dialog phone is
proven at the provider first (the token reads the number in its WABA; 360dialog accepts the
key), as the API does; ``--no-verify`` skips that for an operator preparing phones offline.
Every change is announced to the running API instances, which route the next message by it.
"""

from __future__ import annotations

import sys

import asyncpg
import typer
from rich.table import Table

from bisnesgpt.cli import antiban
from bisnesgpt.cli.common import COMPANY_HELP, command_group, console, err_console
from bisnesgpt.cli.database import announce, run_with_database
from bisnesgpt.config import Settings
from bisnesgpt.core.errors import Conflict, NotFound, ValidationFailed
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.phone_rates import rate_limit
from bisnesgpt.engines.wwebjs.antiban import SendingToday, phone_sending
from bisnesgpt.infra.secrets import resolve_encryption_key, secret_box
from bisnesgpt.messaging.queues import CONNECTION_TYPE_QUEUES
from bisnesgpt.phones import store
from bisnesgpt.phones.live_status import LiveStatus, live_status
from bisnesgpt.phones.service import CONNECTION_TYPES, META_TYPES, PhoneConfigService
from bisnesgpt.phones.store import D360_API_KEY, META_ACCESS_TOKEN, PhoneConfig
from bisnesgpt.tenancy import store as tenancy

phones_app = command_group(help="Phones of a company: connection type and credentials.")

TYPE_HELP = f"Connection type: {' | '.join(CONNECTION_TYPES)}"


def _secret(value: str | None, what: str) -> str | None:
    if value == "-":
        read = sys.stdin.readline().strip()
        if not read:
            raise typer.BadParameter(f"no {what} on stdin")
        return read
    return value


def _fields(display_phone_number: str | None, phone_number_id: str | None, waba_id: str | None,
            client_id: str | None, channel_id: str | None, ordered: bool | None = None) -> dict[str, str | None]:
    given = {"display_phone_number": display_phone_number, "meta_phone_number_id": phone_number_id,
             "meta_waba_id": waba_id, "dialog360_client_id": client_id, "dialog360_channel_id": channel_id,
             "ordered_sends": None if ordered is None else str(ordered).lower()}
    return {k: v for k, v in given.items() if v is not None}


ORDERED_HELP = ("Messages to one chat leave in acceptance order (the default); --unordered sends each as soon "
                "as possible unless the message asks for order (broadcasts to many chats)")


async def _announce(settings: Settings, database_url: str, company_id: str, phone_index: int,
                    connection_type: str | None) -> None:
    """Publish the change so the deployment's running APIs drop their cached route (best effort)."""
    from bisnesgpt.messaging.router import announce_change

    if not await announce(settings, database_url, lambda client, namespace: announce_change(
            client, namespace, company_id, phone_index, connection_type, "cli")):
        err_console.print("note: Redis not reachable; running APIs pick the change up within ROUTER_CACHE_TTL")


def _service(db: Database, settings: Settings, *, encrypts: bool) -> PhoneConfigService:
    async def on_change(company_id: str, phone_index: int, connection_type: str | None) -> None:
        await _announce(settings, db.dsn, company_id, phone_index, connection_type)

    box = secret_box(resolve_encryption_key(settings)) if encrypts else None
    # Claims are proven here, before anything is saved (`_prove`); save() itself asks nothing.
    return PhoneConfigService(db, box, on_change=on_change, claims=None)


VERIFY_HELP = "Prove the number at the provider before storing it (--no-verify: an operator's offline setup)"


async def _prove(settings: Settings, connection_type: str, fields: dict[str, str | None], *, token: str | None,
                 d360_key: str | None) -> None:
    """Ask the provider whether the credentials own the number; the number it names goes into ``fields``."""
    from bisnesgpt.engines.meta.claims import CloudApiClaims

    claims = CloudApiClaims(settings)
    if connection_type in META_TYPES:
        pn_id = fields.get("meta_phone_number_id")
        if not (pn_id and token):
            raise ValidationFailed("proving a Cloud API phone needs --phone-number-id and --access-token "
                                   "(or --no-verify)")
        proven = await claims.prove_meta(phone_number_id=pn_id, waba_id=fields.get("meta_waba_id"),
                                         access_token=token)
        if proven.display_phone_number and "display_phone_number" not in fields:
            fields["display_phone_number"] = proven.display_phone_number
    elif connection_type == "360dialog":
        if not d360_key:
            raise ValidationFailed("proving a 360dialog phone needs --api-key (or --no-verify)")
        proven = await claims.prove_d360(api_key=d360_key)
        fields["meta_phone_number_id"] = proven.phone_number_id
        if proven.waba_id is not None:
            fields["meta_waba_id"] = proven.waba_id


def _with_secrets(db: Database, settings: Settings, phone: tuple[str, int], fields: dict[str, str | None], *,
                  token: str | None, d360_key: str | None) -> tuple[PhoneConfigService, dict[str, str | None]]:
    """The phone service (with the key when a secret is given) and ``fields`` plus the encrypted secrets."""
    service = _service(db, settings, encrypts=token is not None or d360_key is not None)
    if token is not None:
        fields["meta_access_token_encrypted"] = service.encrypt(META_ACCESS_TOKEN, *phone, token)
    if d360_key is not None:
        fields["api_key_encrypted"] = service.encrypt(D360_API_KEY, *phone, d360_key)
    return service, fields


def _describe(config: PhoneConfig) -> str:
    spec = CONNECTION_TYPE_QUEUES.get(config.connection_type)
    return (f"phone {config.company_id}/{config.phone_index}: {config.connection_type or 'wwebjs'} "
            f"→ {spec.name if spec else '(no queue)'} ({config.status})")


@phones_app.command("add")
def phones_add(
    company_id: str = typer.Argument(..., help=COMPANY_HELP),
    index: int = typer.Option(0, "--index", "-i", min=0, help="Phone index (0, 1, …)"),
    connection_type: str = typer.Option("wwebjs", "--type", "-t", help=TYPE_HELP),
    display_phone_number: str | None = typer.Option(None, "--display-phone-number"),
    phone_number_id: str | None = typer.Option(None, "--phone-number-id", help="Meta phone number id"),
    waba_id: str | None = typer.Option(None, "--waba-id", help="Meta WhatsApp Business Account id"),
    access_token: str | None = typer.Option(None, "--access-token", help="Meta access token ('-': stdin)"),
    client_id: str | None = typer.Option(None, "--client-id", help="360dialog client id"),
    channel_id: str | None = typer.Option(None, "--channel-id", help="360dialog channel id"),
    api_key: str | None = typer.Option(None, "--api-key", help="360dialog D360-API-KEY ('-': stdin)"),
    ordered: bool | None = typer.Option(None, "--ordered/--unordered", help=ORDERED_HELP),
    verify: bool = typer.Option(True, "--verify/--no-verify", help=VERIFY_HELP),
) -> None:
    """Add a phone to a company."""
    token = _secret(access_token, "access token")
    d360_key = _secret(api_key, "API key")
    if connection_type in META_TYPES and not (phone_number_id and waba_id and token):
        raise typer.BadParameter("--phone-number-id, --waba-id and --access-token are required for " + connection_type)
    if connection_type == "360dialog" and not (client_id and channel_id):
        raise typer.BadParameter("--client-id and --channel-id are required for 360dialog")

    async def add(db: Database, settings: Settings) -> PhoneConfig:
        async with db.connection() as conn:
            if await store.get_phone(conn, company_id, index) is not None:
                raise Conflict(f"phone {company_id}/{index} exists; change it with `bisnesgpt phones set`")
            await tenancy.get_company(conn, company_id)  # an unknown company: 404 before the provider is asked
        plain = _fields(display_phone_number, phone_number_id, waba_id, client_id, channel_id, ordered)
        if verify:
            await _prove(settings, connection_type, plain, token=token, d360_key=d360_key)
        service, fields = _with_secrets(db, settings, (company_id, index), plain, token=token, d360_key=d360_key)
        return await service.save(company_id, index, connection_type=connection_type, fields=fields,
                                  initial_status=connection_type not in ("wwebjs",))

    console.print(_describe(run_with_database(add)) + " added")


@phones_app.command("set")
@antiban.with_antiban_options
def phones_set(
    company_id: str = typer.Argument(..., help=COMPANY_HELP),
    index: int = typer.Argument(..., min=0, help="Phone index"),
    connection_type: str | None = typer.Option(None, "--type", "-t", help=TYPE_HELP),
    status: str | None = typer.Option(None, "--status", help="Configuration status (e.g. ready, disabled)"),
    display_phone_number: str | None = typer.Option(None, "--display-phone-number"),
    phone_number_id: str | None = typer.Option(None, "--phone-number-id"),
    waba_id: str | None = typer.Option(None, "--waba-id"),
    access_token: str | None = typer.Option(None, "--access-token", help="('-': stdin)"),
    client_id: str | None = typer.Option(None, "--client-id"),
    channel_id: str | None = typer.Option(None, "--channel-id"),
    api_key: str | None = typer.Option(None, "--api-key", help="('-': stdin)"),
    ordered: bool | None = typer.Option(None, "--ordered/--unordered", help=ORDERED_HELP),
    verify: bool = typer.Option(True, "--verify/--no-verify", help=VERIFY_HELP),
    messages_per_second: str | None = typer.Option(
        None, "--messages-per-second", help="Cloud API / 360dialog: this phone's own send rate, applied within "
        "5 s ('default': back to META_PHONE_MESSAGES_PER_SECOND)"),
    *,
    controls: dict[str, object],
) -> None:
    """Change a phone's type, status, credentials, per-chat order, send rate or anti-ban controls (the rest is kept).

    A change of the number or its credentials is proven at the provider with the values given
    and, for the rest, the stored ones. The anti-ban options set the WhatsApp-Web phone's own
    controls (over its company's defaults, ``bisnesgpt companies antiban``, and the WWEBJS_* settings).
    """
    token = _secret(access_token, "access token")
    d360_key = _secret(api_key, "API key")

    async def change(db: Database, settings: Settings) -> PhoneConfig:
        plain = _fields(display_phone_number, phone_number_id, waba_id, client_id, channel_id, ordered)
        claimed = {"meta_phone_number_id", "meta_waba_id", "dialog360_channel_id"} & plain.keys()
        if verify and (claimed or token is not None or d360_key is not None):
            await _prove_change(db, settings, company_id, index, connection_type, plain, token=token,
                                d360_key=d360_key)
        service, fields = _with_secrets(db, settings, (company_id, index), plain, token=token, d360_key=d360_key)
        if messages_per_second is not None:
            rated = await _set_rate(service, settings, company_id, index, messages_per_second)
            if not (fields or connection_type or status or controls):
                return rated
        if not fields and connection_type is None and status is None:
            if controls:
                return await _set_antiban(db, company_id, index, controls)
            raise ValidationFailed("nothing to change: give --type, --status, --ordered/--unordered, a credential "
                                   "option or an anti-ban option")
        updated = await service.update(company_id, index, connection_type=connection_type, status=status,
                                       fields=fields)
        if controls:
            await _set_antiban(db, company_id, index, controls)
        return updated

    console.print(_describe(run_with_database(change)) + " updated")


async def _phone_or_404(conn: asyncpg.Connection, company_id: str, index: int) -> PhoneConfig:
    phone = await store.get_phone(conn, company_id, index)
    if phone is None:
        raise NotFound(f"phone {company_id}/{index} is not configured; add it with `bisnesgpt phones add`")
    return phone


async def _set_rate(service: PhoneConfigService, settings: Settings, company_id: str, index: int,
                    given: str) -> PhoneConfig:
    """Set (``default``: reset) the phone's own send rate and print the rate in effect."""
    try:
        rate = None if given.strip().lower() == "default" else float(given)
    except ValueError:
        raise ValidationFailed(f"--messages-per-second: {given!r} is not a number (or 'default')") from None
    config = await service.set_rate_limit(company_id, index, rate)
    effective = rate_limit(settings, config.connection_type, config.settings)
    console.print(f"messages per second: {effective.effective:g}"
                  + (" (the default)" if effective.configured is None else f" (default {effective.default:g})"))
    return config


async def _set_antiban(db: Database, company_id: str, index: int, controls: dict[str, object]) -> PhoneConfig:
    """Set a WhatsApp-Web phone's own anti-ban controls (printed as they are now); the phone."""
    async with db.connection() as conn:
        phone = await _phone_or_404(conn, company_id, index)
    if (phone.connection_type or "wwebjs") != "wwebjs":
        raise Conflict(f"phone {company_id}/{index} is {phone.connection_type}: the anti-ban controls are for "
                       "WhatsApp-Web (wwebjs) phones")
    changed = await antiban.change_antiban(db, company_id, index, controls)
    console.print(f"phone {company_id}/{index} anti-ban: {antiban.describe(changed)}")
    return phone


async def _prove_change(db: Database, settings: Settings, company_id: str, index: int, connection_type: str | None,
                        plain: dict[str, str | None], *, token: str | None, d360_key: str | None) -> None:
    """Prove a changed claim: what is given, completed from the stored phone (its secret decrypted)."""
    async with db.connection() as conn:
        current = await store.get_phone(conn, company_id, index)
    kind = connection_type or (current.connection_type if current else None) or "wwebjs"
    if current is not None and (kind in META_TYPES or kind == "360dialog"):
        box = secret_box(resolve_encryption_key(settings))
        for column in ("meta_phone_number_id", "meta_waba_id"):
            stored = getattr(current, column)
            if column not in plain and stored is not None:
                plain[column] = stored
        token = token if token is not None else current.meta_access_token(box)
        d360_key = d360_key if d360_key is not None else current.dialog360_api_key(box)
    before = dict(plain)
    await _prove(settings, kind, plain, token=token, d360_key=d360_key)
    for column in ("meta_phone_number_id", "meta_waba_id"):  # stored values completed the proof: not changes
        if column in plain and plain[column] == before.get(column) and current is not None \
                and getattr(current, column) == plain[column]:
            del plain[column]


@phones_app.command("remove")
def phones_remove(
    company_id: str = typer.Argument(..., help=COMPANY_HELP),
    index: int = typer.Argument(..., min=0, help="Phone index"),
) -> None:
    """Remove a phone (its messages stay; new sends to it answer 404)."""

    async def remove(db: Database, settings: Settings) -> None:
        await _service(db, settings, encrypts=False).remove(company_id, index)

    run_with_database(remove)
    console.print(f"phone {company_id}/{index} removed")


@phones_app.command("list")
def phones_list(company_id: str | None = typer.Argument(None, help="Only this company's phones")) -> None:
    """List phones (secrets only as set / not set)."""

    async def fetch(db: Database, settings: Settings) -> list[tuple[PhoneConfig, LiveStatus, SendingToday | None]]:
        async with db.connection() as conn:
            if company_id is not None:
                await tenancy.get_company(conn, company_id)  # an unknown company is an error, not an empty table
                configs = await store.company_phones(conn, company_id)
            else:
                configs = await store.all_phones(conn)
            out = []
            for config in configs:
                row = await store.get_phone_status(conn, config.company_id, config.phone_index)
                sending = (await phone_sending(conn, settings, config.company_id, config.phone_index)
                           if (config.connection_type or "wwebjs") == "wwebjs" else None)
                out.append((config, live_status(row["status"] if row else None, row["metadata"] if row else {}),
                            sending))
            return out

    # "connection": the live status, as the console and /api/bot-status show it; "status": the configuration's;
    # "sent today": a WhatsApp-Web phone's sends against the anti-ban caps in effect (warm-up applied).
    table = Table("company", "index", "type", "queue", "connection", "status", "display number", "meta phone id",
                  "360 channel", "secret", "order", "sent today")
    for config, live, sending in run_with_database(fetch):
        spec = CONNECTION_TYPE_QUEUES.get(config.connection_type)
        secret = "set" if (config.meta_access_token_encrypted or config.api_key_encrypted) else "-"
        connection = live.status + (f" until {live.paused_until:%H:%M} UTC" if live.paused_until else "")
        table.add_row(config.company_id, str(config.phone_index), config.connection_type or "wwebjs (NULL)",
                      spec.name if spec else "(unknown type)", connection, config.status or "-",
                      config.display_phone_number or "-", config.meta_phone_number_id or "-",
                      config.dialog360_channel_id or "-", secret,
                      "per chat" if config.ordered_sends else "unordered", _today(sending))
    console.print(table)


def _today(sending: SendingToday | None) -> str:
    """``5/40 msgs, 2/4 new chats, warm-up day 2/5`` (no cap: the count alone)."""
    if sending is None:
        return "-"

    def of(count: int, cap: int) -> str:
        return f"{count}/{cap}" if cap else str(count)

    messages, chats = of(sending.sent_today, sending.message_cap), of(sending.new_chats_today, sending.new_chat_cap)
    shown = f"{messages} msgs, {chats} new chats"
    return shown + (f", warm-up day {sending.warmup_day}/{sending.warmup_days}" if sending.warmup_day else "")
