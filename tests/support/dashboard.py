"""Test support for the dashboard: the whole running system and a headless Chromium.

``DashboardSystem`` starts the sandbox WhatsApp-Web network, the Cloud API emulator and the
real orchestrator (``bisnesgpt start``: api, wwebjs with the sandbox driver, meta pointed at
the emulator), with two companies: ``acme`` (a WhatsApp-Web phone 0 and a Cloud API phone 1)
and ``beta`` (a WhatsApp-Web phone 0). The browser is Debian's ``/usr/bin/chromium`` driven
by Playwright (``playwright install`` is never used).

The fixtures the dashboard's browser modules share live here too (each module imports them,
so each module runs one system of its own): ``system``, ``browser``, ``operator`` (a signed-in
operator page, its script and server errors checked after each test by ``_no_page_errors``)
and ``axe_script`` (axe-core's bundle), with the helpers ``sign_in``, ``wait_status``,
``strip_item`` and ``serious_violations``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.core.crypto import SecretBox
from bisnesgpt.db.pool import Database
from bisnesgpt.messaging.store import touch_inbound_session
from bisnesgpt.phones.store import META_ACCESS_TOKEN
from bisnesgpt.tenancy import store as tenancy
from tests.support import orchestrator as orch
from tests.support.meta import (
    APP_SECRET,
    VERIFY_TOKEN,
    EmulatorProc,
    drop_module_database,
    module_database,
    module_redis,
)
from tests.support.wwebjs import FAST_WWEBJS_ENV, SandboxNetwork, start_sandbox

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_KEY = "dashboard-operator-key-0123456789"
META_PHONE_ID = "106540352242922"
META_TOKEN = "dashboard-meta-token"
CONTACT = "60123456789"
DELIVERED = ("sent", "delivered", "read")  # a sent message's later states, in order
# The README's screenshots; refreshed only on request (a test run never edits tracked files).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
LIVE_TIMEOUT_MS = 30_000


@dataclass
class DashboardSystem:
    workdir: Path
    database_url: str
    redis_url: str
    db: Database
    sandbox: SandboxNetwork | None = None
    emulator: EmulatorProc | None = None
    run: orch.OrchestratorRun | None = None
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.run is not None
        return f"http://127.0.0.1:{self.run.ports['api']}"

    async def seed(self) -> None:
        box = SecretBox.from_hex(orch.ENCRYPTION_KEY)
        async with self.db.transaction() as conn:
            for company, name in (("acme", "Acme Trading"), ("beta", "Beta Foods")):
                await tenancy.create_company(conn, company, name)
                _record, self.keys[company] = await tenancy.create_api_key(conn, company_id=company, name="dashboard")
                await conn.execute("INSERT INTO phone_configs (company_id, phone_index, connection_type) "
                                   "VALUES ($1, 0, 'wwebjs')", company)
            await conn.execute(
                """INSERT INTO phone_configs (company_id, phone_index, connection_type, meta_phone_number_id,
                                              meta_waba_id, meta_access_token_encrypted, display_phone_number)
                   VALUES ('acme', 1, 'meta_direct', $1, '419561257915477', $2, '+1 555-078-3881')""",
                META_PHONE_ID, box.encrypt(META_TOKEN, META_ACCESS_TOKEN.at('acme', 1)))
            # The Cloud API's 24-hour window is open with this contact.
            await touch_inbound_session(conn, "acme", 1, CONTACT, datetime.now(UTC))

    def start(self, **env: str) -> None:
        self.sandbox = start_sandbox(self.workdir)
        run = orch.OrchestratorRun(self.workdir, database_url=self.database_url, redis_url=self.redis_url)
        self.emulator = EmulatorProc(self.workdir, webhook_url=f"http://127.0.0.1:{run.ports['meta']}/webhook/meta",
                                     phones=[f"{META_PHONE_ID}:{META_TOKEN}"])
        wwebjs = {k: v for k, v in FAST_WWEBJS_ENV.items() if k != "HEARTBEAT_INTERVAL"}
        run.env.update(wwebjs)
        run.env.update(ADMIN_API_KEY=ADMIN_KEY, WWEBJS_DRIVER="sandbox", WWEBJS_SANDBOX_URL=self.sandbox.url,
                       META_GRAPH_URL=self.emulator.url, D360_BASE_URL=self.emulator.url, META_APP_SECRET=APP_SECRET,
                       META_WEBHOOK_VERIFY_TOKEN=VERIFY_TOKEN, META_RETRY_BASE_MS="200",
                       DASHBOARD_LIVE_INTERVAL_MS="500", DASHBOARD_ROLLUP_INTERVAL_MS="1000", **env)
        self.run = run.start()
        run.wait_healthy(["api", "wwebjs", "meta"], timeout=120)

    def close(self) -> None:
        if self.run is not None:
            self.run.cleanup()
        if self.emulator is not None:
            self.emulator.close()
        if self.sandbox is not None:
            self.sandbox.proc.kill_tree()

    # --- helpers for tests ------------------------------------------------------------------

    async def api(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            return await client.request(method, path, **kwargs)

    async def message_status(self, message_id: str) -> str | None:
        value = await self.db.fetchval("SELECT status FROM messages WHERE message_id = $1", message_id)
        return str(value) if value is not None else None

    async def wait_message(self, message_id: str, status: str, timeout: float = 60) -> None:
        """Wait until the message is ``status`` — for ``sent``, or later: the emulator's delivered/read
        webhooks may move it on before the next poll."""
        wanted = set(DELIVERED[DELIVERED.index(status):]) if status in DELIVERED else {status}
        deadline = time.monotonic() + timeout
        while (current := await self.message_status(message_id)) not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"message {message_id} is {current}, not {status}, after {timeout}s")
            await asyncio.sleep(0.2)

    async def cli(self, *args: str, **env: str) -> tuple[int, str]:
        assert self.run is not None
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bisnesgpt", *args, cwd=self.workdir,
                                                    env={**self.run.env, **env}, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return int(proc.returncode or 0), out.decode(errors="replace")


async def screenshot(page: Any, name: str, *, into: Path, full_page: bool = True) -> Path:
    """Save a screenshot into ``into`` (the test's directory), or with ``UPDATE_SCREENSHOTS=1``
    into docs/screenshots/ (committed: the README shows them)."""
    folder = SCREENSHOTS if UPDATE_SCREENSHOTS else into
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


# --- fixtures and helpers shared by the dashboard's browser modules ---------------------------

@pytest.fixture(scope="module")
async def system(pg_server_url: str, template_database: str, redis_server_url: str,
                 tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> AsyncIterator[DashboardSystem]:
    """The running system of one module; its ``SYSTEM_ENV`` (a dict, if it has one) adds settings."""
    extra_env: dict[str, str] = getattr(request.module, "SYSTEM_ENV", {})
    database_url = await module_database(pg_server_url, template_database)
    db = Database(database_url, max_size=4)
    await db.open()
    workdir: Path = tmp_path_factory.mktemp("dashboard")
    with module_redis(redis_server_url) as redis_url:
        running = DashboardSystem(workdir, database_url, redis_url, db)
        try:
            await running.seed()
            started = time.monotonic()
            running.start(META_RESTART_DELAY="3000", DASHBOARD_BACKLOG_SECONDS="2",
                          WEBHOOK_ALLOW_PRIVATE_DESTINATIONS="true", WEBHOOK_POLL_INTERVAL_SECONDS="0.5", **extra_env)
            print(f"\n[measured] system up (orchestrator + 3 roles healthy): {time.monotonic() - started:.1f}s")
            yield running
        finally:
            running.close()
            await db.close()
            await drop_module_database(pg_server_url, database_url)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is a dev dependency")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
async def operator(system: DashboardSystem, browser: Any) -> AsyncIterator[Any]:
    """A browser context signed in as the operator (the first test does the signing in)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    page = await context.new_page()
    page.problems = []  # script errors and server errors seen by the page, checked after each test
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on("response", lambda r: page.problems.append(f"{r.status} {r.url}") if r.status >= 500 or (
        r.status == 404 and "/dashboard/" in r.url) else None)
    # Console errors other than expected ones (the browser's favicon probe; a wrong key's 401).
    page.on("console", lambda m: page.problems.append(f"console: {m.text} ({m.location.get('url')})")
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico") and not any(
                allowed in m.text for allowed in ("401 (Unauthorized)", "net::ERR_FAILED")) else None)
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture(autouse=True)
def _no_page_errors(request: pytest.FixtureRequest) -> Any:
    """After each test: the problems its module's signed-in page (``operator`` or ``admin``) met."""
    yield
    for name in ("operator", "admin"):
        if name in request.fixturenames:
            page = request.getfixturevalue(name)
            problems, page.problems[:] = list(page.problems), []
            assert not problems, problems


async def sign_in(page: Any, base: str, key: str) -> Any:
    await page.goto(base + "/dashboard/login")
    await page.fill("#api_key", key)
    def is_sign_in(response: Any) -> bool:
        return bool(response.url.endswith("/dashboard/login") and response.request.method == "POST")

    async with page.expect_response(is_sign_in) as info:
        await page.click("#sign-in")
    return await info.value


async def wait_status(page: Any, selector: str, statuses: tuple[str, ...], timeout: int = LIVE_TIMEOUT_MS) -> None:
    await page.wait_for_function(
        "([sel, wanted]) => { const n = document.querySelector(sel); "
        "return !!n && wanted.includes(n.dataset.status); }",
        arg=[selector, list(statuses)], timeout=timeout)


def strip_item(page: Any, kind: str, company: str, phone: int | None = None) -> Any:
    """An item of the attention strip (every page shows it)."""
    phone_part = "" if phone is None else f'[data-phone="{phone}"]'
    return page.locator(f'#attention-items li[data-kind="{kind}"][data-company="{company}"]{phone_part}')


NODE_DIR = Path(__file__).resolve().parents[1] / "node"
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def axe_script() -> Path:
    """axe-core's browser bundle, from tests/node (pinned in its package-lock.json)."""
    if not AXE.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install axe-core (tests/node: npm ci)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True,
                       timeout=300)
    return AXE


async def serious_violations(page: Any, axe: Path) -> list[str]:
    """axe-core's serious and critical violations of the page as it is now: rule, impact, where."""
    await page.add_script_tag(path=str(axe))
    found = await page.evaluate("""async () => {
        const result = await axe.run(document, { resultTypes: ["violations"] });
        return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => v.id + " (" + v.impact + "): " + v.nodes.slice(0, 3).map((n) => n.target.join(" ")
            + " " + (n.failureSummary || "").split("\\n").slice(1, 2).join("")).join(" | "));
    }""")
    return list(found)
