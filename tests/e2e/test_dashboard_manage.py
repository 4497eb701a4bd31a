"""Managing the system from the dashboard, in Chromium: companies, API keys, tenant webhook endpoints.

The same running system as ``test_dashboard_browser.py`` (the ``system``, ``browser`` and
``axe_script`` fixtures of ``tests/support/dashboard.py``): the orchestrator with api, wwebjs
(sandbox) and meta (emulator), and the companies ``acme`` and ``beta``. Every change is
checked where it lands (the rows, what a key can then do) and in the audit log.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bisnesgpt.tenancy import store as tenancy
from bisnesgpt.webhooks.signing import verify_signature
from tests.support import dashboard as shared
from tests.support.dashboard import ADMIN_KEY, CHROMIUM, CONTACT, DashboardSystem, screenshot
from tests.support.polling import eventually
from tests.support.procs import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)"),
]

# The running system, the browser and axe-core's bundle, shared with the dashboard's other browser tests.
system = shared.system
browser = shared.browser
axe_script = shared.axe_script
_no_page_errors = shared._no_page_errors  # checks the ``admin`` page's problems after each test
sign_in = shared.sign_in
LIVE_TIMEOUT_MS = shared.LIVE_TIMEOUT_MS
# The api processes cache keys for a minute: a change of a key must still hold at once (api:keys).
KEY_CACHE_SECONDS = 60
SYSTEM_ENV = {"API_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS)}


def watch_problems(page: Any) -> list[str]:
    """Script errors, logged errors and server errors the page meets (4xx answers are the tests' own business)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    # Errors a page script logs (a live-update handler that throws is caught and logged, not raised).
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" and not any(
        expected in m.text for expected in ("Failed to load resource", "net::ERR_FAILED")) else None)
    return problems


@pytest.fixture(scope="module")
async def admin(system: DashboardSystem, browser: Any) -> AsyncIterator[Any]:
    """An operator's signed-in page (axe-core may be injected: the context ignores the page's CSP)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    page = await context.new_page()
    page.problems = watch_problems(page)
    assert (await sign_in(page, system.url, ADMIN_KEY)).status == 303
    try:
        yield page
    finally:
        await context.close()


async def audited(system: DashboardSystem, path: str) -> list[tuple[str, int, str | None]]:
    """The audit log's dashboard rows for ``path``: (route, status, company acted on)."""
    rows = await system.db.fetch("SELECT route, status, target_company_id FROM audit_log "
                                 "WHERE via = 'dashboard' AND path = $1 ORDER BY id", path)
    return [(r["route"], r["status"], r["target_company_id"]) for r in rows]


async def confirm_dialog(page: Any, *, ok: bool) -> None:
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok" if ok else "#confirm-cancel")


async def test_an_operator_creates_a_company_sets_its_quota_and_disables_and_enables_it(
        system: DashboardSystem, admin: Any) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/companies")
    await page.wait_for_selector('#companies tr[data-company-row="acme"]')
    await page.fill("#new-company-id", "gamma")
    await page.fill("#new-company-name", "Gamma Goods")
    await page.click("#create-company")
    row = page.locator('#companies tr[data-company-row="gamma"]')
    await row.wait_for()
    assert "Gamma Goods" in await row.inner_text()
    assert await system.db.fetchval("SELECT status FROM companies WHERE id = 'gamma'") == "active"
    # The same id again: the API's problem detail, in the form.
    await page.fill("#new-company-id", "gamma")
    await page.click("#create-company")
    await page.wait_for_selector("#company-error:not([hidden])")
    assert "already exists" in await page.inner_text("#company-error")

    # A send quota of 5 a minute: stored, shown, and what a send over it meets.
    await row.locator('input[id="quota-gamma-minute"]').fill("5")
    await row.locator("button.set-quota").click()
    await page.wait_for_function("""() => document.querySelector('tr[data-company-row="gamma"] [data-field="quota"]')
        .textContent.startsWith("5 / minute")""")
    assert await system.db.fetchval("SELECT send_quota_per_minute FROM companies WHERE id = 'gamma'") == 5

    # A key of gamma's works until gamma is disabled; cancelling the dialog changes nothing.
    async with system.db.connection() as conn:
        _record, gamma_key = await tenancy.create_api_key(conn, company_id="gamma", name="probe")
    assert (await system.api("GET", "/dashboard/api/me", gamma_key)).status_code == 200
    await row.locator('button[data-action="disable"]').click()
    await confirm_dialog(page, ok=False)
    assert await system.db.fetchval("SELECT status FROM companies WHERE id = 'gamma'") == "active"
    await row.locator('button[data-action="disable"]').click()
    await confirm_dialog(page, ok=True)
    await page.wait_for_selector('#companies tr[data-company-row="gamma"][data-status="disabled"]')
    assert (await system.api("GET", "/dashboard/api/me", gamma_key)).status_code == 401
    # Focus stays on the row acted on: Disable became Enable.
    await page.wait_for_function("""() => document.activeElement.dataset.action === "enable"
        && document.activeElement.closest('tr').dataset.companyRow === "gamma" """)
    await page.keyboard.press("Enter")
    await page.wait_for_selector('#companies tr[data-company-row="gamma"][data-status="active"]')
    assert (await system.api("GET", "/dashboard/api/me", gamma_key)).status_code == 200

    # The command line changes the same row the page does.
    code, out = await system.cli("companies", "disable", "gamma")
    assert code == 0 and "gamma is disabled" in out, out
    await page.reload()
    await page.wait_for_selector('#companies tr[data-company-row="gamma"][data-status="disabled"]')
    code, out = await system.cli("companies", "enable", "gamma")
    assert code == 0 and "gamma is active" in out, out

    assert [a[:2] for a in await audited(system, "/dashboard/api/companies")] == [
        ("/dashboard/api/companies", 201), ("/dashboard/api/companies", 409)]
    assert await audited(system, "/dashboard/api/companies/gamma/disable") == [
        ("/dashboard/api/companies/{company_id}/disable", 200, "gamma")]
    assert await audited(system, "/dashboard/api/companies/gamma/quota") == [
        ("/dashboard/api/companies/{company_id}/quota", 200, "gamma")]
    assert await audited(system, "/dashboard/api/companies/gamma/enable") == [
        ("/dashboard/api/companies/{company_id}/enable", 200, "gamma")]


async def test_an_operator_creates_a_limited_key_shown_once_and_revokes_it(
        system: DashboardSystem, admin: Any) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/companies")
    await page.wait_for_selector('#keys tr[data-key-id]')
    await page.select_option("#new-key-company", "acme")
    await page.fill("#new-key-name", "crm")
    await page.check('#new-key-scopes input[value="messages:read"]')
    await page.fill("#new-key-phones", "1")
    await page.fill("#new-key-days", "30")
    await page.click("#create-key")
    await page.wait_for_selector("#new-key-shown:not([hidden])")
    key = await page.input_value("#new-key-value")
    assert key.startswith("bgpt_")
    row = await system.db.fetchrow("SELECT id, scopes, phone_indexes, expires_at > now() + interval '29 days' AS later "
                                   "FROM api_keys WHERE key_prefix = $1", key[:14])
    assert row is not None and row["scopes"] == ["messages:read"] and row["phone_indexes"] == [1] and row["later"]
    # The key reads its phone's messages, is refused a send (no scope) and phone 0 (not its phone).
    async with httpx.AsyncClient(base_url=system.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/api/v1/messages?phoneIndex=1")).status_code == 200
        assert (await client.get("/api/v1/messages?phoneIndex=0")).status_code == 403
        refused = await client.post("/api/v2/messages/text/acme/60123456789", json={"message": "x", "phoneIndex": 1})
        assert refused.status_code == 403 and "messages:send" in refused.json()["detail"]
    # Shown once: after a reload only the prefix is on the page.
    await page.reload()
    key_row = page.locator(f'#keys tr[data-key-id="{row["id"]}"]')
    await key_row.wait_for()
    assert await page.is_hidden("#new-key-shown")
    assert key not in await page.content()
    assert "messages:read; phones 1; expires" in await key_row.inner_text()

    # A bad limit is the API's problem detail, in the form.
    await page.fill("#new-key-phones", "0")
    await page.select_option("#new-key-company", "")  # an operator key cannot be limited to phones
    await page.click("#create-key")
    await page.wait_for_selector("#key-error:not([hidden])")
    assert "operator keys reach everything" in await page.inner_text("#key-error")

    await key_row.locator('button[data-action="revoke"]').click()
    await confirm_dialog(page, ok=True)
    await page.wait_for_selector(f'#keys tr[data-key-id="{row["id"]}"][data-state="revoked"]')
    async with httpx.AsyncClient(base_url=system.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/api/v1/messages?phoneIndex=1")).status_code == 401
    assert await audited(system, f"/dashboard/api/keys/{row['id']}/revoke") == [
        ("/dashboard/api/keys/{key_id}/revoke", 200, None)]
    await screenshot(page, "companies", into=system.workdir / "screenshots")


async def test_a_company_user_sees_and_manages_only_its_own_company(
        system: DashboardSystem, browser: Any, axe_script: Path) -> None:
    beta_key = await system.db.fetchval("SELECT id FROM api_keys WHERE company_id = 'beta' ORDER BY id LIMIT 1")
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        problems = watch_problems(page)
        assert (await sign_in(page, system.url, system.keys["acme"])).status == 303
        await page.goto(system.url + "/dashboard/companies")
        await page.wait_for_selector('#companies tr[data-company-row="acme"]')
        await page.wait_for_selector("#keys tr[data-key-id]")
        assert await page.locator("#companies tr[data-company-row]").count() == 1
        assert await page.is_hidden("#new-company")
        assert await page.locator('#companies button[data-action="disable"]').count() == 0
        companies = await page.locator("#keys tr[data-key-id] td:nth-of-type(1)").all_inner_texts()
        assert companies and set(companies) == {"acme"}, companies
        assert [o for o in await page.locator("#new-key-company option").all_inner_texts()] == ["Acme Trading (acme)"]
        # Its own key: created and shown once.
        await page.fill("#new-key-name", "own")
        await page.click("#create-key")
        await page.wait_for_selector("#new-key-shown:not([hidden])")
        assert (await page.input_value("#new-key-value")).startswith("bgpt_")
        violations = await shared.serious_violations(page, axe_script)

        # Another company's key, an operator key, the company routes: refused by the API itself.
        csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
        headers = {"X-CSRF-Token": csrf or "", "Origin": system.url}
        revoke = await page.request.post(f"{system.url}/dashboard/api/keys/{beta_key}/revoke", headers=headers,
                                         data={"confirm": True})
        assert revoke.status == 404
        assert await system.db.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", beta_key) is None
        operator_key = await page.request.post(f"{system.url}/dashboard/api/keys", headers=headers,
                                               data={"companyId": None})
        assert operator_key.status == 403
        beta = await page.request.post(f"{system.url}/dashboard/api/keys", headers=headers,
                                       data={"companyId": "beta"})
        assert beta.status == 404
        disable = await page.request.post(f"{system.url}/dashboard/api/companies/beta/disable", headers=headers,
                                          data={"confirm": True})
        assert disable.status == 403
        listed = await page.request.get(f"{system.url}/dashboard/api/keys?company=beta")
        assert listed.status == 404
        assert not problems, problems
    finally:
        await context.close()
    assert not violations, violations


async def test_the_companies_page_passes_axe_and_fits_a_390px_screen(
        system: DashboardSystem, admin: Any, browser: Any, axe_script: Path) -> None:
    await admin.goto(system.url + "/dashboard/companies")
    await admin.wait_for_selector('#companies tr[data-company-row="acme"]')
    await admin.wait_for_selector('#attention-count:not([data-status="unknown"])')
    violations = await shared.serious_violations(admin, axe_script)
    assert not violations, violations
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        assert (await sign_in(page, system.url, ADMIN_KEY)).status == 303
        await page.goto(system.url + "/dashboard/companies")
        await page.wait_for_selector('#companies tr[data-company-row="acme"]')
        await page.wait_for_selector("#keys tr[data-key-id]")
        widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        for button in await page.locator('#companies tr[data-company-row="acme"] button').all():
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        await screenshot(page, "companies-mobile", into=system.workdir / "screenshots")
    finally:
        await context.close()


class Receiver:
    """A webhook receiver on a real port: records each request (headers, body) and answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.close()


async def test_an_operator_adds_a_webhook_endpoint_tests_it_re_enables_it_and_removes_it(
        system: DashboardSystem, admin: Any, receiver: Receiver) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/webhooks")
    await page.wait_for_selector("#new-webhook-company option", state="attached")
    await page.select_option("#new-webhook-company", "acme")
    await page.fill("#new-webhook-url", receiver.url)
    await page.fill("#new-webhook-description", "crm")
    await page.click("#create-webhook")
    await page.wait_for_selector("#new-webhook-shown:not([hidden])")
    secret = await page.input_value("#new-webhook-secret")
    endpoint = await system.db.fetchval("SELECT id FROM webhook_endpoints WHERE url = $1", receiver.url)
    assert endpoint is not None and secret.startswith("whsec_"), secret
    row = page.locator(f'#webhooks tr[data-webhook="{endpoint}"]')
    await row.wait_for()

    # Send test: a signed webhook.test document reaches the receiver now; its answer is shown in the row.
    await row.locator('button[data-action="test"]').click()
    await row.locator('[data-test="ok"]').wait_for()
    assert "HTTP 200" in await row.locator('[data-field="test"]').inner_text()
    tests = [(h, b) for h, b in receiver.requests if h.get("x-bisnesgpt-event-type") == "webhook.test"]
    assert len(tests) == 1
    headers, body = tests[0]
    assert verify_signature(secret, body, headers["x-bisnesgpt-signature"])
    assert b'"type":"webhook.test"' in body and b'"company_id":"acme"' in body
    # It is not an event: nothing of it in the events or the delivery log, nor in the failure streak.
    assert await system.db.fetchval("SELECT count(*) FROM tenant_events WHERE id = $1",
                                    headers["x-bisnesgpt-event-id"]) == 0

    # Disabled after failing (as the delivery worker leaves it): the strip links here, Enable turns it back on.
    await system.db.execute("UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), "
                            "disabled_reason = 'disabled after 24 h of failed deliveries' WHERE id = $1", endpoint)
    await page.goto(system.url + "/dashboard/processes")
    item = shared.strip_item(page, "webhook", "acme")
    await item.wait_for()
    await item.locator("a").click()
    await page.wait_for_url(f"**/dashboard/webhooks?company=acme#webhook-{endpoint}")
    row = page.locator(f'#webhooks tr[data-webhook="{endpoint}"][data-enabled="false"]')
    await row.wait_for()
    assert "disabled after 24 h" in await row.inner_text()
    await row.locator('button[data-action="enable"]').click()
    await page.wait_for_selector(f'#webhooks tr[data-webhook="{endpoint}"][data-enabled="true"]')
    assert await system.db.fetchval("SELECT enabled FROM webhook_endpoints WHERE id = $1", endpoint) is True
    await screenshot(page, "webhooks", into=system.workdir / "screenshots")

    # Remove: cancelled, nothing happens; confirmed, the endpoint is gone.
    row = page.locator(f'#webhooks tr[data-webhook="{endpoint}"]')
    await row.locator('button[data-action="remove"]').click()
    await confirm_dialog(page, ok=False)
    assert await system.db.fetchval("SELECT count(*) FROM webhook_endpoints WHERE id = $1", endpoint) == 1
    await row.locator('button[data-action="remove"]').click()
    await confirm_dialog(page, ok=True)
    await row.wait_for(state="detached")
    assert await system.db.fetchval("SELECT count(*) FROM webhook_endpoints WHERE id = $1", endpoint) == 0

    assert await audited(system, "/dashboard/api/webhooks") == [("/dashboard/api/webhooks", 201, "acme")]
    for action in ("test", "enable", "remove"):
        assert [a[:2] for a in await audited(system, f"/dashboard/api/webhooks/{endpoint}/{action}")] == [
            (f"/dashboard/api/webhooks/{{endpoint_id}}/{action}", 200)]


async def test_a_webhook_test_that_gets_no_answer_and_a_refused_url_are_shown(
        system: DashboardSystem, admin: Any) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/webhooks")
    await page.wait_for_selector("#new-webhook-company option", state="attached")
    await page.select_option("#new-webhook-company", "beta")
    await page.fill("#new-webhook-url", "ftp://example.com/hook")
    await page.click("#create-webhook")
    await page.wait_for_selector("#webhook-error:not([hidden])")
    assert "url" in (await page.inner_text("#webhook-error")).lower()

    silent = f"http://127.0.0.1:{free_port()}/nobody"
    await page.fill("#new-webhook-url", silent)
    await page.click("#create-webhook")
    await page.wait_for_selector("#new-webhook-shown:not([hidden])")
    endpoint = await system.db.fetchval("SELECT id FROM webhook_endpoints WHERE url = $1", silent)
    row = page.locator(f'#webhooks tr[data-webhook="{endpoint}"]')
    await row.locator('button[data-action="test"]').click()
    await row.locator('[data-test="failed"]').wait_for()
    assert "no answer" in await row.locator('[data-field="test"]').inner_text()
    async with system.db.connection() as conn:
        await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)


async def test_a_company_user_sees_and_tests_only_its_own_webhook_endpoints(
        system: DashboardSystem, browser: Any, axe_script: Path, receiver: Receiver) -> None:
    beta = await system.api("POST", "/api/v1/webhooks", system.keys["beta"], json={"url": receiver.url})
    assert beta.status_code == 201, beta.text
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        bypass_csp=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        problems = watch_problems(page)
        assert (await sign_in(page, system.url, system.keys["acme"])).status == 303
        await page.goto(system.url + "/dashboard/webhooks")
        assert await page.is_hidden("#new-webhook-company-label")
        await page.fill("#new-webhook-url", receiver.url)
        await page.click("#create-webhook")
        await page.wait_for_selector("#new-webhook-shown:not([hidden])")
        await page.wait_for_selector("#webhooks tr[data-webhook]")
        assert set(await page.locator("#webhooks tr[data-webhook] td:nth-of-type(1)").all_inner_texts()) == {"acme"}
        widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        violations = await shared.serious_violations(page, axe_script)
        await screenshot(page, "webhooks-company-mobile", into=system.workdir / "screenshots")
        csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
        headers = {"X-CSRF-Token": csrf or "", "Origin": system.url}
        for action in ("test", "enable", "remove"):
            refused = await page.request.post(f"{system.url}/dashboard/api/webhooks/{beta.json()['id']}/{action}",
                                              headers=headers, data={"confirm": True} if action == "remove" else None)
            assert refused.status == 404, (action, refused.status)
        assert not [h for h, _b in receiver.requests if h.get("x-bisnesgpt-event-type") == "webhook.test"]
        assert not problems, problems
    finally:
        await context.close()
        await system.db.execute("DELETE FROM webhook_endpoints WHERE company_id IN ('acme', 'beta')")
    assert not violations, violations


NEW_META_PHONE = "106540352242999"
NEW_META_WABA = "419561257915477"
NEW_META_TOKEN = "dashboard-added-phone-token"


async def test_an_operator_adds_a_cloud_api_and_a_whatsapp_web_phone_changes_settings_and_removes_one(
        system: DashboardSystem, admin: Any) -> None:
    assert system.emulator is not None
    async with httpx.AsyncClient() as client:  # the number exists at "Meta" (the emulator), with its token
        registered = await client.post(system.emulator.url + "/_emulator/phones", json={
            "phone_number_id": NEW_META_PHONE, "access_token": NEW_META_TOKEN, "waba_id": NEW_META_WABA})
        assert registered.status_code < 300, registered.text
    page = admin
    await page.goto(system.url + "/dashboard/phones")
    await page.wait_for_selector("#phone-cards [data-phone]")
    await page.click("#add-phone summary")
    await page.select_option("#new-phone-company", "beta")
    await page.fill("#new-phone-index", "1")
    await page.select_option("#new-phone-type", "meta_direct")
    await page.fill("#new-phone-number-id", NEW_META_PHONE)
    await page.fill("#new-phone-waba-id", NEW_META_WABA)
    # A token that does not read the number: refused by the Graph API, nothing stored.
    await page.fill("#new-phone-token", "not-the-token")
    await page.click("#create-phone")
    await page.wait_for_selector("#phone-error:not([hidden])")
    refusal = await page.inner_text("#phone-error")
    assert refusal and await system.db.fetchval(
        "SELECT count(*) FROM phone_configs WHERE company_id = 'beta' AND phone_index = 1") == 0, refusal
    await page.fill("#new-phone-token", NEW_META_TOKEN)
    await page.click("#create-phone")
    cloud = page.locator('#phone-cards [data-phone="beta:1"][data-kind="cloud"]')
    await cloud.wait_for()
    stored = await system.db.fetchrow("SELECT connection_type, meta_phone_number_id, meta_access_token_encrypted "
                                      "FROM phone_configs WHERE company_id = 'beta' AND phone_index = 1")
    assert stored["connection_type"] == "meta_direct" and stored["meta_phone_number_id"] == NEW_META_PHONE
    assert NEW_META_TOKEN not in stored["meta_access_token_encrypted"]  # encrypted at rest
    assert NEW_META_TOKEN not in await page.content()  # and never shown again
    assert await page.input_value("#new-phone-token") == ""

    # A WhatsApp-Web phone: stored, and its session starts (the card shows a QR code to scan).
    await page.fill("#new-phone-index", "2")
    await page.select_option("#new-phone-type", "wwebjs")
    await page.click("#create-phone")
    await shared.wait_status(page, '[data-phone="beta:2"]', ("qr",), timeout=60_000)
    await page.locator('[data-phone="beta:2"] img[data-qr]').wait_for()
    # The same index again: the API's problem detail.
    await page.click("#create-phone")
    await page.wait_for_function("() => document.getElementById('phone-error').textContent.includes('exists')")

    # Settings of the Cloud API phone: the number shown and per-chat order.
    await cloud.locator("details.settings summary").click()
    await cloud.locator('input[id="settings-beta-1-display"]').fill("+1 555-010-0100")
    await cloud.locator('input[id="settings-beta-1-ordered"]').uncheck()
    await cloud.locator("button.save-settings").click()
    await page.wait_for_function("""() => document.querySelector('[data-phone="beta:1"]').textContent
        .includes("+1 555-010-0100")""")
    row = await system.db.fetchrow("SELECT display_phone_number, ordered_sends FROM phone_configs "
                                   "WHERE company_id = 'beta' AND phone_index = 1")
    assert row["display_phone_number"] == "+1 555-010-0100" and row["ordered_sends"] is False

    # Remove the WhatsApp-Web phone (confirmed): its card and configuration are gone.
    await page.click('[data-phone="beta:2"] button[data-action="remove"]')
    await confirm_dialog(page, ok=True)
    await page.locator('[data-phone="beta:2"]').wait_for(state="detached")
    assert await system.db.fetchval(
        "SELECT count(*) FROM phone_configs WHERE company_id = 'beta' AND phone_index = 2") == 0
    await screenshot(page, "phones-add", into=system.workdir / "screenshots")

    assert [a[:3] for a in await audited(system, "/dashboard/api/phones")][-3:] == [
        ("/dashboard/api/phones", 201, "beta"), ("/dashboard/api/phones", 201, "beta"),
        ("/dashboard/api/phones", 409, "beta")]
    assert await audited(system, "/dashboard/api/phones/beta/1/settings") == [
        ("/dashboard/api/phones/{company_id}/{phone_index}/settings", 200, "beta")]


async def test_a_company_user_adds_phones_only_to_its_own_company(
        system: DashboardSystem, browser: Any, axe_script: Path) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        bypass_csp=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        problems = watch_problems(page)
        assert (await sign_in(page, system.url, system.keys["acme"])).status == 303
        await page.goto(system.url + "/dashboard/phones")
        await page.wait_for_selector("#phone-cards [data-phone]")
        await page.click("#add-phone summary")
        await page.select_option("#new-phone-type", "meta_direct")
        assert await page.is_hidden("#new-phone-company-label")
        await page.locator('[data-phone="acme:1"] details.settings summary').click()
        widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        violations = await shared.serious_violations(page, axe_script)
        csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
        headers = {"X-CSRF-Token": csrf or "", "Origin": system.url}
        other = await page.request.post(f"{system.url}/dashboard/api/phones", headers=headers,
                                        data={"companyId": "beta", "phoneIndex": 5, "connectionType": "wwebjs"})
        assert other.status == 404
        settings = await page.request.post(f"{system.url}/dashboard/api/phones/beta/1/settings", headers=headers,
                                           data={"orderedSends": True})
        assert settings.status == 404
        assert await system.db.fetchval(
            "SELECT count(*) FROM phone_configs WHERE company_id = 'beta' AND phone_index = 5") == 0
        assert not problems, problems
    finally:
        await context.close()
    assert not violations, violations


async def test_a_test_message_from_a_phone_card_shows_its_id_and_its_status_as_it_moves(
        system: DashboardSystem, admin: Any) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/phones")
    card = page.locator('#phone-cards [data-phone="acme:1"]')
    await card.locator("details.test-send summary").click()
    await card.locator('input[id="test-acme-1-to"]').fill("+" + CONTACT)
    await card.locator('input[id="test-acme-1-text"]').fill("dashboard test message")
    await card.locator("button.send-test").click()
    status = card.locator('[data-test-message="acme:1"]')
    await status.locator("a.mono").wait_for()
    message_id = await status.locator("a.mono").inner_text()
    row = await system.db.fetchrow("SELECT source, content, phone_index FROM messages WHERE message_id = $1",
                                   message_id)
    assert row is not None and row["source"] == "dashboard" and row["content"] == "dashboard test message"
    # Followed live: the Cloud API (the emulator) sends it, then reports it delivered and read.
    await status.locator('.badge[data-status="read"]').wait_for(timeout=60_000)
    assert await system.message_status(message_id) == "read"
    await screenshot(page, "phones-test-message", into=system.workdir / "screenshots")

    # A number outside the Cloud API's 24-hour window: the API's refusal, and nothing stored.
    beta = page.locator('#phone-cards [data-phone="beta:1"]')
    await beta.locator("details.test-send summary").click()
    await beta.locator('input[id="test-beta-1-to"]').fill("+60111222333")
    await beta.locator("button.send-test").click()
    await page.wait_for_selector('#toast[data-kind="error"]:not([hidden])')
    assert "template" in (await page.inner_text("#toast")).lower()
    assert await system.db.fetchval("SELECT count(*) FROM messages WHERE company_id = 'beta' AND phone_index = 1") == 0
    assert await audited(system, "/dashboard/api/phones/acme/1/test-message") == [
        ("/dashboard/api/phones/{company_id}/{phone_index}/test-message", 202, "acme")]

    # A company's user sends from its own phones only.
    refused = await system.api("POST", "/dashboard/api/phones/beta/0/test-message", system.keys["acme"],
                               json={"to": CONTACT, "text": "not mine"})
    assert refused.status_code == 404


async def test_after_a_logout_the_card_offers_start_with_a_new_qr_and_a_live_restart_asks_first(
        system: DashboardSystem, admin: Any) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/phones")
    card = page.locator('#phone-cards [data-phone="acme:0"]')
    await shared.wait_status(page, '[data-phone="acme:0"]', ("qr",), timeout=60_000)
    # Nothing is linked yet: logging out could not do anything.
    assert await card.locator('button[data-action="logout"]').is_disabled()
    assert system.sandbox is not None
    code, out = await system.cli("sandbox", "wweb", "scan", "acme", "0", "--url", system.sandbox.url)
    assert code == 0, out
    await shared.wait_status(page, '[data-phone="acme:0"]', ("ready",), timeout=60_000)
    assert await card.locator('button[data-action="start"]').is_disabled()  # connected: nothing to start

    # Restarting the connected session asks first; cancelled, it stays connected.
    await card.locator('button[data-action="restart"]').click()
    await confirm_dialog(page, ok=False)
    assert await system.db.fetchval("SELECT count(*) FROM wwebjs_session_commands WHERE company_id = 'acme' "
                                    "AND phone_index = 0 AND action = 'restart'") == 0

    await card.locator('button[data-action="logout"]').click()
    await confirm_dialog(page, ok=True)
    await shared.wait_status(page, '[data-phone="acme:0"]', ("disconnected",), timeout=60_000)
    start = card.locator('button[data-action="start"]')
    await page.wait_for_function("""() => { const b = document.querySelector('[data-phone="acme:0"] '
        + 'button[data-action="start"]'); return b && b.textContent === "start (new QR)" && !b.disabled; }""")
    for action in ("restart", "stop", "logout"):
        assert await card.locator(f'button[data-action="{action}"]').is_disabled(), action
    await screenshot(page, "phones-logged-out", into=system.workdir / "screenshots")
    await start.click()
    await shared.wait_status(page, '[data-phone="acme:0"]', ("qr",), timeout=60_000)
    await card.locator("img[data-qr]").wait_for()
    assert await system.db.fetchval("SELECT desired_state FROM wwebjs_sessions WHERE company_id = 'acme' "
                                    "AND phone_index = 0") == "running"


async def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    """Poll ``condition`` (an async callable) until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def test_an_operator_edits_an_endpoint_reads_its_deliveries_retries_a_dead_one_replays_and_rotates(
        system: DashboardSystem, admin: Any, browser: Any, axe_script: Path, receiver: Receiver) -> None:
    acme = system.keys["acme"]
    created = await system.api("POST", "/api/v1/webhooks", acme, json={"url": receiver.url})
    assert created.status_code == 201, created.text
    endpoint, secret = created.json()["id"], created.json()["secret"]
    try:
        started = datetime.now(UTC) - timedelta(seconds=5)
        sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                                json={"message": "tell my webhook", "phoneIndex": 1})
        assert sent.status_code == 202, sent.text
        await wait_for(lambda: system.db.fetchval(
            "SELECT count(*) >= 2 FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'delivered'", endpoint),
            "no deliveries reached the receiver")
        # One delivery failed past the horizon (as the delivery worker leaves it).
        dead = await system.db.fetchval(
            """UPDATE webhook_deliveries SET status = 'dead', dead_at = now(),
                      last_status_code = 500, last_error = 'HTTP 500', attempts = 9
               WHERE id = (SELECT min(id) FROM webhook_deliveries WHERE endpoint_id = $1) RETURNING id""", endpoint)
        dead_event = await system.db.fetchval("SELECT event_id FROM webhook_deliveries WHERE id = $1", dead)

        page = admin
        await page.goto(system.url + "/dashboard/webhooks")
        await page.locator(f'#webhooks tr[data-webhook="{endpoint}"] button[data-action="manage"]').click()
        await page.wait_for_selector(f'#webhook-manage[data-endpoint="{endpoint}"]:not([hidden])')
        row = page.locator(f'#wm-deliveries tr[data-delivery="{dead}"][data-status="dead"]')
        await row.wait_for()
        assert await row.locator('[data-field="attempts"]').inner_text() == "9"
        assert "HTTP 500" in await row.locator('[data-field="response"]').inner_text()
        assert "dead 1" in await page.inner_text("#wm-counts")
        # Only a dead delivery offers a retry.
        delivered_rows = page.locator('#wm-deliveries tr[data-status="delivered"]')
        assert await delivered_rows.count() >= 1
        assert await delivered_rows.locator('[data-action="retry-delivery"]').count() == 0
        await page.select_option("#wm-status", "dead")
        await page.locator('#wm-deliveries tr[data-status="delivered"]').first.wait_for(state="detached")
        assert await page.locator("#wm-deliveries tr[data-delivery]").count() == 1

        before = sum(1 for h, _b in receiver.requests if h.get("x-bisnesgpt-event-id") == dead_event)
        await row.locator('[data-action="retry-delivery"]').click()
        await wait_for(lambda: system.db.fetchval("SELECT status = 'delivered' FROM webhook_deliveries WHERE id = $1",
                                                  dead), "the retried delivery was not delivered")
        assert sum(1 for h, _b in receiver.requests if h.get("x-bisnesgpt-event-id") == dead_event) == before + 1
        await page.select_option("#wm-status", "")
        await page.locator(f'#wm-deliveries tr[data-delivery="{dead}"][data-status="delivered"]').wait_for()

        # Edit: only message.status events, disabled, then enabled again; a bad URL is refused and said.
        await page.fill("#wm-events", "message.status")
        await page.uncheck("#wm-enabled")
        await page.click("#wm-save")
        await page.wait_for_selector(f'#webhooks tr[data-webhook="{endpoint}"][data-enabled="false"]')
        stored = await system.db.fetchrow("SELECT event_types, enabled FROM webhook_endpoints WHERE id = $1", endpoint)
        assert (list(stored["event_types"]), stored["enabled"]) == (["message.status"], False)
        await page.check("#wm-enabled")
        await page.click("#wm-save")
        await page.wait_for_selector(f'#webhooks tr[data-webhook="{endpoint}"][data-enabled="true"]')
        await page.fill("#wm-url", "ftp://example.com/hook")
        await page.click("#wm-save")
        await page.wait_for_selector("#wm-error:not([hidden])")
        assert "url" in (await page.inner_text("#wm-error")).lower()
        assert await system.db.fetchval("SELECT url FROM webhook_endpoints WHERE id = $1", endpoint) == receiver.url
        await page.fill("#wm-url", receiver.url)

        # Rotate: the new secret is shown once; the old one keeps signing for the overlap.
        await page.click("#wm-rotate")
        await confirm_dialog(page, ok=True)
        await page.wait_for_selector("#wm-secret-shown:not([hidden])")
        new_secret = await page.input_value("#wm-secret")
        assert new_secret.startswith("whsec_") and new_secret != secret
        overlap = await system.db.fetchval("SELECT EXTRACT(EPOCH FROM previous_secret_expires_at - now()) "
                                           "FROM webhook_endpoints WHERE id = $1", endpoint)
        assert overlap > 60, overlap
        assert await page.inner_text("#wm-overlap-until") != "now (no overlap)"

        # Replay the range: the events go out again (origin replay), signed with both secrets.
        delivered = await system.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1",
                                             endpoint)
        await page.fill("#wm-since", started.astimezone().strftime("%Y-%m-%dT%H:%M"))
        await page.click("#wm-replay-go")
        await confirm_dialog(page, ok=True)
        await wait_for(lambda: system.db.fetchval(
            "SELECT count(*) > 0 AND bool_and(status = 'delivered') FROM webhook_deliveries "
            "WHERE endpoint_id = $1 AND origin = 'replay'", endpoint), "the replayed events were not delivered")
        replayed = await system.db.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND origin = 'replay'", endpoint)
        assert replayed >= 1 and delivered >= 2
        last_headers, last_body = receiver.requests[-1]
        assert verify_signature(new_secret, last_body, last_headers["x-bisnesgpt-signature"])
        assert verify_signature(secret, last_body, last_headers["x-bisnesgpt-signature"])
        await page.select_option("#wm-status", "delivered")  # the log reloads: the replayed deliveries are in it
        await page.locator("#wm-deliveries td", has_text="· replay").first.wait_for()

        # The log pages newest first: nextBefore asks for the older ones.
        first = (await system.api("GET", f"/dashboard/api/webhooks/{endpoint}/deliveries?limit=1", acme)).json()
        older = (await system.api("GET", f"/dashboard/api/webhooks/{endpoint}/deliveries?limit=1&before="
                                  f"{first['nextBefore']}", acme)).json()
        assert older["deliveries"][0]["id"] < first["deliveries"][0]["id"] == first["nextBefore"]
        assert (await system.api("GET", f"/dashboard/api/webhooks/{endpoint}/deliveries?status=gone",
                                 acme)).status_code == 422

        # Another company's user cannot reach any of it.
        beta = system.keys["beta"]
        for method, path, body in (("GET", "deliveries", None), ("POST", "edit", {"enabled": False}),
                                   ("POST", f"deliveries/{dead}/retry", None),
                                   ("POST", "rotate-secret", {"confirm": True}),
                                   ("POST", "replay", {"confirm": True, "since": started.isoformat()})):
            refused = await system.api(method, f"/dashboard/api/webhooks/{endpoint}/{path}", beta, json=body)
            assert refused.status_code == 404, (path, refused.text)
        # A replay or rotation not confirmed does nothing; a bad range is a 422.
        assert (await system.api("POST", f"/dashboard/api/webhooks/{endpoint}/rotate-secret", acme)).status_code == 409
        inverted = await system.api("POST", f"/dashboard/api/webhooks/{endpoint}/replay", acme, json={
            "confirm": True, "since": datetime.now(UTC).isoformat(), "until": started.isoformat()})
        assert inverted.status_code == 422, inverted.text
        assert not page.problems, page.problems
        for action in ("edit", "rotate-secret", "replay", f"deliveries/{dead}/retry"):
            assert [a[1] for a in await audited(system, f"/dashboard/api/webhooks/{endpoint}/{action}")
                    if a[1] < 300], action

        context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                            bypass_csp=True)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        try:
            narrow = await context.new_page()
            assert (await sign_in(narrow, system.url, ADMIN_KEY)).status == 303
            await narrow.goto(system.url + "/dashboard/webhooks")
            await narrow.locator(f'#webhooks tr[data-webhook="{endpoint}"] button[data-action="manage"]').click()
            await narrow.locator("#wm-deliveries tr[data-delivery]").first.wait_for()
            if await narrow.locator("#wm-deliveries details").count():  # a response body, opened
                await narrow.locator("#wm-deliveries details summary").first.click()
            widths = await narrow.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], widths
            violations = await shared.serious_violations(narrow, axe_script)
        finally:
            await context.close()
        assert not violations, violations
    finally:
        await system.db.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)


NEW_D360_PHONE = "106540352243777"
NEW_D360_KEY = "d360-dashboard-added-key"


async def test_an_operator_adds_a_360dialog_phone_its_key_checked_first_and_never_shown_again(
        system: DashboardSystem, admin: Any, browser: Any, axe_script: Path) -> None:
    assert system.emulator is not None
    async with httpx.AsyncClient() as client:  # the channel exists at "360dialog" (the emulator), with its key
        registered = await client.post(system.emulator.url + "/_emulator/phones", json={
            "phone_number_id": NEW_D360_PHONE, "d360_api_key": NEW_D360_KEY})
        assert registered.status_code < 300, registered.text
    page = admin
    try:
        await page.goto(system.url + "/dashboard/phones")
        await page.wait_for_selector("#phone-cards [data-phone]")
        await page.click("#add-phone summary")
        await page.select_option("#new-phone-company", "beta")
        await page.fill("#new-phone-index", "3")
        await page.select_option("#new-phone-type", "360dialog")
        assert await page.is_hidden("#new-phone-cloud") and await page.is_visible("#new-phone-d360")
        # Missing credentials: said, nothing stored.
        await page.click("#create-phone")
        await page.wait_for_selector("#phone-error:not([hidden])")
        assert "clientId, channelId, apiKey" in await page.inner_text("#phone-error")
        await page.fill("#new-phone-client-id", "dashClient1")
        await page.fill("#new-phone-channel-id", "dashChannel1")
        # A key 360dialog refuses: nothing stored.
        await page.fill("#new-phone-api-key", "not-the-key")
        await page.click("#create-phone")
        await page.wait_for_function("() => !document.getElementById('phone-error').textContent.includes('clientId')")
        assert await page.inner_text("#phone-error")
        assert await system.db.fetchval(
            "SELECT count(*) FROM phone_configs WHERE company_id = 'beta' AND phone_index = 3") == 0
        await page.fill("#new-phone-api-key", NEW_D360_KEY)
        await page.click("#create-phone")
        card = page.locator('#phone-cards [data-phone="beta:3"]')
        await card.wait_for()
        stored = await system.db.fetchrow(
            "SELECT connection_type, meta_phone_number_id, dialog360_client_id, dialog360_channel_id, "
            "api_key_encrypted FROM phone_configs WHERE company_id = 'beta' AND phone_index = 3")
        assert (stored["connection_type"], stored["meta_phone_number_id"], stored["dialog360_client_id"],
                stored["dialog360_channel_id"]) == ("360dialog", NEW_D360_PHONE, "dashClient1", "dashChannel1")
        assert NEW_D360_KEY not in stored["api_key_encrypted"]  # encrypted at rest
        assert NEW_D360_KEY not in await page.content()  # and never shown again
        assert await page.input_value("#new-phone-api-key") == ""
        assert not page.problems, page.problems
        # A company user adds only to its own company.
        refused = await system.api("POST", "/dashboard/api/phones", system.keys["acme"], json={
            "companyId": "beta", "phoneIndex": 4, "connectionType": "360dialog", "clientId": "c", "channelId": "d",
            "apiKey": NEW_D360_KEY})
        assert refused.status_code == 404, refused.text

        context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                            bypass_csp=True)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        try:
            narrow = await context.new_page()
            assert (await sign_in(narrow, system.url, ADMIN_KEY)).status == 303
            await narrow.goto(system.url + "/dashboard/phones")
            await narrow.locator('#phone-cards [data-phone="beta:3"]').wait_for()
            await narrow.click("#add-phone summary")
            await narrow.select_option("#new-phone-type", "360dialog")
            widths = await narrow.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], widths
            violations = await shared.serious_violations(narrow, axe_script)
        finally:
            await context.close()
        assert not violations, violations
    finally:
        await system.db.execute("DELETE FROM phone_configs WHERE company_id = 'beta' AND phone_index = 3")


async def cloud_settings(system: DashboardSystem) -> dict[str, Any]:
    """``phone_configs.settings`` of acme's Cloud API phone 1."""
    return dict(await system.db.fetchval(
        "SELECT settings FROM phone_configs WHERE company_id = 'acme' AND phone_index = 1"))


async def test_an_operator_sets_a_cloud_phones_rate_limit_in_its_settings_and_resets_it(
        system: DashboardSystem, admin: Any, axe_script: Path) -> None:
    page = admin
    await page.goto(system.url + "/dashboard/phones")
    cloud = page.locator('#phone-cards [data-phone="acme:1"]')
    await cloud.locator("details.settings summary").click()
    assert "In effect: 80 messages/s (the default)" in await cloud.locator('[data-field="rate"]').inner_text()
    await cloud.locator("#settings-acme-1-rate").fill("2.5")
    await cloud.locator("button.save-rate").click()
    await page.wait_for_function("""() => document.querySelector('[data-phone="acme:1"] [data-field="rate"]')
        .textContent.includes("In effect: 2.5 messages/s (this phone's own; default 80)")""")
    stored = await cloud_settings(system)
    assert stored["messages_per_second"] == 2.5
    # A WhatsApp-Web phone shows the rate its sessions share, with nothing to edit.
    wwebjs = page.locator('#phone-cards [data-phone="acme:0"]')
    await wwebjs.locator("details.settings summary").click()
    assert "shared by every WhatsApp-Web session" in await wwebjs.locator('[data-field="rate"]').inner_text()
    assert await wwebjs.locator("#settings-acme-0-rate").count() == 0
    await cloud.locator("details.settings summary").click()
    assert await shared.serious_violations(page, axe_script) == []

    # "Use default": the phone's own rate is gone.
    await cloud.locator("button.reset-rate").click()
    await page.wait_for_function("""() => document.querySelector('[data-phone="acme:1"] [data-field="rate"]')
        .textContent.includes("(the default)")""")
    stored = await cloud_settings(system)
    assert "messages_per_second" not in stored
    assert [a[:2] for a in await audited(system, "/dashboard/api/phones/acme/1/rate-limit")] == [
        ("/dashboard/api/phones/{company_id}/{phone_index}/rate-limit", 200)] * 2


async def test_the_rate_limit_route_takes_a_company_key_for_its_own_phones_and_explains_bad_values(
        system: DashboardSystem) -> None:
    path = "/api/whatsapp/config/acme/1/rate-limit"
    done = await system.api("PUT", path, system.keys["acme"], json={"messagesPerSecond": 40})
    assert done.status_code == 200, done.text
    assert done.json() == {"companyId": "acme", "phoneIndex": 1, "messagesPerSecond": 40,
                           "defaultMessagesPerSecond": 80, "effectiveMessagesPerSecond": 40, "perPhone": True}
    assert (await system.api("PUT", path, ADMIN_KEY, json={"messagesPerSecond": 12})).json()[
        "effectiveMessagesPerSecond"] == 12
    assert (await system.api("PUT", path, system.keys["beta"], json={"messagesPerSecond": 5})).status_code == 404
    for bad in (0, -3, 10_001, "fast"):
        refused = await system.api("PUT", path, system.keys["acme"], json={"messagesPerSecond": bad})
        problem = refused.json()
        assert refused.status_code == 422 and problem["type"] and problem["title"], refused.text
        assert any("messagesPerSecond" in str(e) for e in problem.get("errors", [])), problem
    missing = await system.api("PUT", path, system.keys["acme"], json={})
    assert missing.status_code == 422  # null resets; leaving the field out is a mistake
    wwebjs = await system.api("PUT", "/api/whatsapp/config/acme/0/rate-limit", system.keys["acme"],
                              json={"messagesPerSecond": 5})
    assert wwebjs.status_code == 422 and "WWEBJS_MAX_MESSAGES_PER_SECOND" in wwebjs.json()["detail"]
    assert (await system.api("PUT", "/api/whatsapp/config/acme/7/rate-limit", ADMIN_KEY,
                             json={"messagesPerSecond": 5})).status_code == 404
    stored = await cloud_settings(system)
    assert stored["messages_per_second"] == 12  # the refusals changed nothing
    # The CLI's option, through the same service.
    code, out = await system.cli("phones", "set", "acme", "1", "--messages-per-second", "7")
    assert code == 0 and "messages per second: 7 (default 80)" in out, out
    code, out = await system.cli("phones", "set", "acme", "1", "--messages-per-second", "default")
    assert code == 0 and "messages per second: 80 (the default)" in out, out
    reset = await system.api("PUT", path, system.keys["acme"], json={"messagesPerSecond": None})
    assert reset.json()["messagesPerSecond"] is None and reset.json()["effectiveMessagesPerSecond"] == 80


async def test_an_operator_edits_a_keys_scopes_phones_and_expiry_and_they_hold_at_once_with_the_key_cache(
        system: DashboardSystem, admin: Any) -> None:
    async with system.db.connection() as conn:
        record, key = await tenancy.create_api_key(conn, company_id="acme", name="editable")
    async with httpx.AsyncClient(base_url=system.url, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(2):  # authenticated, then served from the api's key cache
            assert (await client.get("/api/v1/messages?phoneIndex=0")).status_code == 200
        page = admin
        await page.goto(system.url + "/dashboard/companies")
        row = page.locator(f'#keys tr[data-key-id="{record.id}"]')
        await row.locator("details.key-limits summary").click()
        await row.locator('details.key-limits input[value="messages:read"]').uncheck()
        await row.locator(f"#key-{record.id}-phones").fill("1")
        expiry = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
        await row.locator(f"#key-{record.id}-expires").fill(expiry)
        await row.locator("button.save-limits").click()
        await page.wait_for_function(
            "([sel, text]) => document.querySelector(sel).textContent.includes(text)",
            arg=[f'#keys tr[data-key-id="{record.id}"] [data-field="limits"]',
                 "messages:send, sessions:manage, webhooks:manage; phones 1; expires"])
        stored = await system.db.fetchrow("SELECT scopes, phone_indexes, expires_at FROM api_keys WHERE id = $1",
                                          record.id)
        assert stored["scopes"] == ["messages:send", "sessions:manage", "webhooks:manage"]
        assert stored["phone_indexes"] == [1] and stored["expires_at"].date().isoformat() == expiry

        async def refused() -> bool:
            return (await client.get("/api/v1/messages?phoneIndex=1")).status_code == 403
        # Well within the cache's minute: the change was announced, not waited out.
        await eventually(refused, timeout=5, what="the narrowed key refused at once")
        answer = await client.get("/api/v1/messages?phoneIndex=1")
        assert "messages:read" in answer.json()["detail"]

        # Nothing ticked is no scope at all: the API's problem, shown in the form, nothing changed.
        row = page.locator(f'#keys tr[data-key-id="{record.id}"]')
        await row.locator("details.key-limits summary").click()
        for box in await row.locator('details.key-limits input[type="checkbox"]').all():
            await box.uncheck()
        await row.locator("button.save-limits").click()
        await row.locator('details.key-limits [role="alert"]:not([hidden])').wait_for()
        assert "give one or more of" in await row.locator('details.key-limits [role="alert"]').inner_text()
        assert await system.db.fetchval("SELECT scopes FROM api_keys WHERE id = $1", record.id) == stored["scopes"]

        # Every scope, every phone, no expiry again: the key reads phone 0 once more.
        for box in await row.locator('details.key-limits input[type="checkbox"]').all():
            await box.check()
        await row.locator(f"#key-{record.id}-phones").fill("")
        await row.locator(f"#key-{record.id}-expires").fill("")
        await row.locator("button.save-limits").click()
        await page.wait_for_function(
            "([sel, text]) => document.querySelector(sel).textContent.includes(text)",
            arg=[f'#keys tr[data-key-id="{record.id}"] [data-field="limits"]',
                 "every scope; every phone; no expiry"])

        async def reads_again() -> bool:
            return (await client.get("/api/v1/messages?phoneIndex=0")).status_code == 200
        await eventually(reads_again, timeout=5, what="the widened key allowed at once")
    assert [a[1] for a in await audited(system, f"/dashboard/api/keys/{record.id}/limits")] == [200, 422, 200]
