"""The demo's world: its company, key, phones and contact, and making them ready to send.

``seed`` runs before the roles start (idempotent: a second run finds everything in place);
``DemoReadiness`` runs once the orchestrator says everything is up, in a thread of its own
(the arbiter loop must not wait): the WhatsApp-Web phone is paired in the sandbox (its QR
"scanned" on the first run; later runs resume with the stored credentials), the contact
writes to both phones (so the Cloud API's 24-hour window is open, whenever the demo ran
before), and then the banner is printed with the key and three commands.

The API key is kept in plain text in ``DATA_DIR/demo-api-key`` (mode 0600): keys are stored
hashed only, and the banner of every run must show a key that works. It is a key of the
demo company on a local system, nothing else; a key that no longer works (revoked, or the
database was reset) is replaced by a new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bisnesgpt.config import Settings
from bisnesgpt.core.errors import NotFound
from bisnesgpt.db.pool import Database
from bisnesgpt.engines.meta.window import last_inbound_at
from bisnesgpt.infra.secrets import secret_box
from bisnesgpt.orchestrator.banner import api_url, print_banner, ready_lines
from bisnesgpt.phones import store as phones
from bisnesgpt.phones.service import PhoneConfigService
from bisnesgpt.tenancy import store as tenancy

log = logging.getLogger("bisnesgpt.demo")

COMPANY = "demo"
COMPANY_NAME = "Demo Company"
CONTACT = "60123456789"  # the customer who writes to both phones
WEB_PHONE = 0  # WhatsApp Web, paired in the sandbox network
WEB_NUMBER = "60120000001"  # the business number that "scans" the QR
CLOUD_PHONE = 1  # the Cloud API, the emulator's number
PHONE_NUMBER_ID = "109000000000001"
WABA_ID = "109000000000000"
DISPLAY_NUMBER = "15550100001"
# The emulator's credentials: public by design (the emulator plays Meta on this machine only).
ACCESS_TOKEN = "demo-access-token"  # noqa: S105
APP_SECRET = "demo-app-secret"  # noqa: S105
VERIFY_TOKEN = "demo-verify-token"  # noqa: S105
KEY_FILE = "demo-api-key"
READY_TIMEOUT_S = 120.0


def key_path(settings: Settings) -> Path:
    """Where the demo key is kept."""
    return settings.data_dir / KEY_FILE


def _stored_key(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _store_key(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")


async def seed(db: Database, settings: Settings) -> str:
    """The demo company, its key (kept in ``key_path``), its two phones; the key."""
    path = key_path(settings)
    async with db.transaction() as conn:
        try:
            await tenancy.get_company(conn, COMPANY)
        except NotFound:
            await tenancy.create_company(conn, COMPANY, COMPANY_NAME)
            log.info("demo: created company %s", COMPANY)
        key = _stored_key(path)
        found = await tenancy.find_key(conn, key) if key is not None else None
        if key is None or found is None or found[0].revoked_at is not None or found[0].company_id != COMPANY:
            _record, key = await tenancy.create_api_key(conn, company_id=COMPANY, name="demo")
            _store_key(path, key)
            log.info("demo: created an API key for %s, kept in %s", COMPANY, path)
        web = await phones.get_phone(conn, COMPANY, WEB_PHONE)
        cloud = await phones.get_phone(conn, COMPANY, CLOUD_PHONE)
    # The demo seeds its own emulator world before the emulator runs: nothing to ask yet.
    service = PhoneConfigService(db, secret_box(settings), claims=None)
    if web is None:
        await service.save(COMPANY, WEB_PHONE, connection_type="wwebjs", fields={"display_phone_number": WEB_NUMBER})
    if cloud is None:
        await service.connect_meta(COMPANY, CLOUD_PHONE, phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID,
                                   access_token=ACCESS_TOKEN, display_phone_number=DISPLAY_NUMBER)
    return key


@dataclass(frozen=True)
class SandboxUrls:
    """Where the demo's two sandboxes serve."""

    emulator: str
    network: str


def try_commands(settings: Settings, key: str) -> list[str]:
    """The banner's three commands: a send through each engine (answered once sent), then the chat."""
    api = api_url(settings)
    auth = f"-H 'Authorization: Bearer {key}'"

    def send(text: str, phone_index: int) -> str:
        body = f'{{"message": "{text}", "phoneIndex": {phone_index}}}'
        return (f"curl -s -w '\\n' -X POST '{api}/api/v2/messages/text/{COMPANY}/{CONTACT}?wait=10' {auth} "
                f"-H 'Content-Type: application/json' -d '{body}'")

    return [
        send("Hello from WhatsApp Web", WEB_PHONE),
        send("Hello from the Cloud API", CLOUD_PHONE),
        f"curl -s -w '\\n' '{api}/api/v1/messages?chatId={CONTACT}&limit=4' {auth}",
    ]


def demo_lines(settings: Settings, key: str, urls: SandboxUrls, problems: Sequence[str] = ()) -> list[str]:
    """The demo's banner: the system's lines, then the demo's company, key, sandboxes and commands."""
    lines = ready_lines(settings)
    lines[0] = lines[0].replace("bisnesgpt is ready", "bisnesgpt demo is ready")
    lines += [
        f"  company     {COMPANY}: phone {WEB_PHONE} WhatsApp Web (paired in the sandbox), phone {CLOUD_PHONE} "
        f"Cloud API (the emulator); contact {CONTACT} has written to both",
        f"  API key     {key}  (kept in {key_path(settings)}: KEY=$(cat {key_path(settings)}))",
        f"  sandboxes   Cloud API emulator {urls.emulator}/_emulator/docs, "
        f"WhatsApp-Web network {urls.network}/admin/sessions",
        *(f"  NOTE        {problem}" for problem in problems),
        "",
        "Try it, in another terminal (each send answers once the message is sent):",
        *(f"  {command}" for command in try_commands(settings, key)),
    ]
    return lines


class DemoReadiness(threading.Thread):
    """Pairs the WhatsApp-Web phone, lets the contact write to both phones, prints the banner."""

    def __init__(self, settings: Settings, database_url: str, key: str, urls: SandboxUrls, *,
                 show: Callable[[list[str]], None] = print_banner) -> None:
        super().__init__(name="demo-readiness", daemon=True)
        self.settings = settings
        self.database_url = database_url
        self.key = key
        self.urls = urls
        self.show = show
        self.problems: list[str] = []

    def run(self) -> None:
        """Make the demo ready (noting what could not be), then show the banner."""
        began = time.monotonic()
        try:
            asyncio.run(self._prepare())
        except Exception as exc:
            log.exception("demo: set-up failed")
            self.problems.append(f"set-up failed: {exc} (see the log above)")
        log.info("demo: ready to send after %.1fs", time.monotonic() - began)
        self.show(demo_lines(self.settings, self.key, self.urls, self.problems))

    async def _prepare(self) -> None:
        db = Database(self.database_url, min_size=0, max_size=1, application_name="bisnesgpt-demo")
        await db.open()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                await self._pair(db, http)
                await self._contact_writes(db, http)
        finally:
            await db.close()

    async def _pair(self, db: Database, http: httpx.AsyncClient) -> None:
        """Until phone 0's session is ready, scanning its QR whenever it shows one."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        session = f"{self.urls.network}/admin/sessions/{COMPANY}/{WEB_PHONE}"
        while True:
            async with db.connection() as conn:
                row = await phones.get_phone_status(conn, COMPANY, WEB_PHONE)
            status = row["status"] if row is not None else None
            if status == "ready":
                return
            if status == "qr":
                answer = await http.post(f"{session}/scan", json={"phone": WEB_NUMBER, "pushName": COMPANY_NAME})
                if answer.status_code == 200:
                    log.info("demo: paired phone %s/%d in the sandbox as %s", COMPANY, WEB_PHONE, WEB_NUMBER)
            if time.monotonic() > deadline:
                self.problems.append(f"phone {COMPANY}/{WEB_PHONE} is not ready (status {status}); "
                                     "see logs/wwebjs-out.log")
                return
            await asyncio.sleep(0.25)

    async def _contact_writes(self, db: Database, http: httpx.AsyncClient) -> None:
        """The contact writes to both phones; wait until the Cloud API's window is open."""
        since = datetime.now(UTC) - timedelta(seconds=5)
        await http.post(f"{self.urls.network}/admin/sessions/{COMPANY}/{WEB_PHONE}/inbound",
                        json={"from": CONTACT, "type": "text", "text": "Hi! Is the shop open today?",
                              "pushName": "Demo Contact"})
        written = await http.post(f"{self.urls.emulator}/_emulator/inbound",
                                  json={"phone_number_id": PHONE_NUMBER_ID, "from": CONTACT, "name": "Demo Contact",
                                        "text": "Hi! Is the shop open today?"})
        written.raise_for_status()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            async with db.connection() as conn:
                last = await last_inbound_at(conn, COMPANY, CLOUD_PHONE, CONTACT)
            if last is not None and last >= since:
                return
            if time.monotonic() > deadline:
                self.problems.append(f"the contact's message to phone {CLOUD_PHONE} was not stored "
                                     "(free-form Cloud API sends answer TEMPLATE_REQUIRED); see logs/meta-out.log")
                return
            await asyncio.sleep(0.25)
