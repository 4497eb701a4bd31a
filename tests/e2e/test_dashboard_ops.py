"""The dashboard's operations views in Chromium: provider webhooks kept aside, error code names, sending caps.

The same kind of running system as ``test_dashboard_browser.py`` (the fixtures of
``tests/support/dashboard.py``; one system for this module): the orchestrator with api,
wwebjs (sandbox) and meta (the Cloud API emulator, which signs and delivers the webhooks
these tests make it send).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import dashboard as shared
from tests.support.dashboard import ADMIN_KEY, CHROMIUM, CONTACT, META_PHONE_ID, DashboardSystem

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)"),
]

system = shared.system
browser = shared.browser
axe_script = shared.axe_script
operator = shared.operator
_no_page_errors = shared._no_page_errors
LIVE_TIMEOUT_MS = shared.LIVE_TIMEOUT_MS
ACME_WABA = "419561257915477"


def webhook(waba: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """A Cloud API webhook envelope with one change."""
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}]}


async def wait_kept_aside(system: DashboardSystem, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while await system.db.fetchval("SELECT count(*) FROM meta_webhook_changes WHERE routing <> 'routed'") < count:
        assert time.monotonic() < deadline, "the webhooks were not kept aside"
        await asyncio.sleep(0.2)


async def narrow_page(browser: Any, system: DashboardSystem) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        bypass_csp=True)  # axe-core is injected
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        assert (await shared.sign_in(page, system.url, ADMIN_KEY)).status == 303
        yield page
    finally:
        await context.close()


async def signed_in(page: Any, system: DashboardSystem) -> Any:
    """The module's operator page, signed in by the first test that uses it."""
    if "/dashboard/" not in page.url:
        assert (await shared.sign_in(page, system.url, ADMIN_KEY)).status == 303
    return page


async def fits(page: Any) -> None:
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


async def test_provider_webhooks_kept_aside_are_listed_beside_failed_jobs_for_operators_only(
        system: DashboardSystem, operator: Any, browser: Any, axe_script: Path) -> None:
    emulator = system.emulator
    assert emulator is not None
    # An inbound message for a phone_number_id no phone has: kept aside, unmatched.
    nobody = webhook("111222333444555", "messages", {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111",
                                                      "phone_number_id": "123123123"},
        "contacts": [{"profile": {"name": "Nobody"}, "wa_id": "60111222333"}],
        "messages": [{"from": "60111222333", "id": "wamid.kept-aside-1", "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": "for nobody"}}]})
    emulator.admin("POST", "/webhooks", json={"payload": nobody})
    # An account-level change for a WABA whose phones are in two companies: kept aside, ambiguous.
    await system.db.execute(
        """INSERT INTO phone_configs (company_id, phone_index, connection_type, meta_phone_number_id, meta_waba_id)
           VALUES ('beta', 7, 'meta_direct', '999000111', $1)""", ACME_WABA)
    try:
        emulator.admin("POST", "/webhooks", json={"payload": webhook(ACME_WABA, "account_update", {
            "phone_number": "15550783881", "event": "ACCOUNT_UPDATE_TEST"})})
        await wait_kept_aside(system, 2)
    finally:
        await system.db.execute("DELETE FROM phone_configs WHERE company_id = 'beta' AND phone_index = 7")

    page = await signed_in(operator, system)
    await page.goto(system.url + "/dashboard/queues")
    unmatched = page.locator('#kept-aside tr[data-routing="unmatched"]')
    await unmatched.wait_for()
    text = await unmatched.inner_text()
    assert "123123123" in text and "messages.unrouted" in text, text
    assert "no configured phone has 123123123" in await unmatched.locator('[data-field="what-to-do"]').inner_text()
    ambiguous = page.locator('#kept-aside tr[data-routing="ambiguous"]')
    assert await ambiguous.locator('[data-field="candidates"]').inner_text() == "acme/1, beta/7"
    assert "several phones match (acme/1, beta/7)" in await ambiguous.locator('[data-field="what-to-do"]').inner_text()

    # The command line says the same of each.
    code, out = await system.cli("inbound", "unrouted")
    assert code == 0, out
    said = {line.split(": ", 1)[1] for line in out.splitlines() if line.split(":", 1)[0].isdigit()}
    assert said == set(await page.locator('#kept-aside [data-field="what-to-do"]').all_inner_texts()), out

    # A company user never sees them: they belong to no company.
    answer = await system.api("GET", "/dashboard/api/provider-webhooks/unrouted", system.keys["acme"])
    assert answer.status_code == 403, answer.text
    admin = await system.api("GET", "/dashboard/api/provider-webhooks/unrouted?limit=1", ADMIN_KEY)
    assert admin.status_code == 200 and len(admin.json()["changes"]) == 1
    assert (await system.api("GET", "/dashboard/api/provider-webhooks/unrouted?limit=0", ADMIN_KEY)).status_code == 422

    async for narrow in narrow_page(browser, system):
        await narrow.goto(system.url + "/dashboard/queues")
        await narrow.locator('#kept-aside tr[data-routing="ambiguous"]').wait_for()
        await narrow.click('#kept-aside tr[data-routing="unmatched"] details summary')
        await fits(narrow)
        assert await shared.serious_violations(narrow, axe_script) == []


async def test_error_codes_are_shown_with_their_names_on_failed_jobs_and_messages(
        system: DashboardSystem, operator: Any, browser: Any, axe_script: Path) -> None:
    acme = system.keys["acme"]
    assert system.emulator is not None
    system.emulator.admin("POST", "/rules", json={"code": 131026, "times": 1, "phone_number_id": META_PHONE_ID})
    sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                            json={"message": "name my error", "phoneIndex": 1})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["messageId"]
    await system.wait_message(message_id, "failed")

    names = await system.api("GET", "/dashboard/api/error-names", acme)  # no tenant data: any signed-in caller
    assert names.status_code == 200 and names.json()["names"]["131026"] == "not deliverable"

    page = await signed_in(operator, system)
    await page.goto(system.url + "/dashboard/queues")
    error = page.locator(f'#failed tr[data-job="{message_id}"] [data-field="error"]')
    await error.wait_for()
    assert await error.locator('.code-name[data-code="131026"]').inner_text() == " (not deliverable)"
    assert (await error.inner_text()).count("not deliverable") == 1

    await page.goto(f"{system.url}/dashboard/messages?company=acme&id={message_id}")
    await page.wait_for_selector("#detail-fields .code-name")
    assert "131026" in await page.inner_text("#detail-fields")
    assert await page.locator("#detail-fields .code-name").inner_text() == " (not deliverable)"

    async for narrow in narrow_page(browser, system):
        await narrow.goto(system.url + "/dashboard/queues")
        await narrow.locator(f'#failed tr[data-job="{message_id}"] .code-name').wait_for()
        await fits(narrow)
        assert await shared.serious_violations(narrow, axe_script) == []


async def test_a_whatsapp_web_card_shows_todays_sends_against_the_caps_and_the_warm_up_day(
        system: DashboardSystem, operator: Any, browser: Any, axe_script: Path) -> None:
    acme = system.keys["acme"]
    assert system.sandbox is not None
    code, out = await system.cli("sandbox", "wweb", "scan", "acme", "0", "--url", system.sandbox.url)
    assert code == 0, out
    page = await signed_in(operator, system)
    await page.goto(system.url + "/dashboard/phones")
    await shared.wait_status(page, '[data-phone="acme:0"]', ("ready",))
    # No caps set: the card says so, from the same answer as the sessions API.
    assert await page.inner_text('[data-phone="acme:0"] [data-field="sent-today"]') == "0 (no cap)"
    assert await page.inner_text('[data-phone="acme:0"] [data-field="warmup"]') == "none"

    changed = await system.api("PATCH", "/api/sessions/acme/0/antiban", acme,
                               json={"dailyMessageCap": 40, "dailyNewChatCap": 20, "warmupDays": 4})
    assert changed.status_code == 200, changed.text
    for n in range(2):
        sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                                json={"message": f"counted {n}", "phoneIndex": 0})
        assert sent.status_code == 202, sent.text
        await system.wait_message(sent.json()["messageId"], "sent")
    session = await system.api("GET", "/api/sessions/acme/0", acme)
    assert session.status_code == 200, session.text
    sending = session.json()["sending"]
    assert (sending["sentToday"], sending["warmupDay"], sending["warmupDays"]) == (2, 1, 4), sending
    assert 0 < sending["messageCap"] < 40  # day 1 of the warm-up: a share of the cap

    await page.goto(system.url + "/dashboard/phones")
    card = page.locator('[data-phone="acme:0"]')
    await card.locator('[data-field="warmup"]').wait_for()
    assert await card.locator('[data-field="sent-today"]').inner_text() == f"2 / {sending['messageCap']}" + (
        " — cap reached" if sending["messageCap"] <= 2 else "")
    assert await card.locator('[data-field="new-chats-today"]').inner_text() == (
        f"{sending['newChatsToday']} / {sending['newChatCap']}"
        + (" — cap reached" if sending["newChatsToday"] >= sending["newChatCap"] else ""))
    assert await card.locator('[data-field="warmup"]').inner_text() == "day 1 of 4"
    # A Cloud API card has no such block.
    assert await page.locator('[data-phone="acme:1"] [data-field="sent-today"]').count() == 0
    one = await system.api("GET", "/dashboard/api/phones/acme/0", acme)
    assert one.json()["sending"] == sending

    async for narrow in narrow_page(browser, system):
        await narrow.goto(system.url + "/dashboard/phones")
        await narrow.locator('[data-phone="acme:0"] [data-field="warmup"]').wait_for()
        await fits(narrow)
        assert await shared.serious_violations(narrow, axe_script) == []


async def test_messages_failed_by_a_provider_status_webhook_are_listed_beside_failed_jobs_filtered_and_scoped(
        system: DashboardSystem, operator: Any, browser: Any, axe_script: Path) -> None:
    acme, beta = system.keys["acme"], system.keys["beta"]
    assert system.emulator is not None
    failed: dict[int, str] = {}
    # Accepted by the Cloud API (the job completes), then failed by a ``failed`` status webhook.
    for code in (131049, 131026):
        system.emulator.admin("POST", "/rules", json={"code": code, "mode": "webhook", "times": 1,
                                                      "phone_number_id": META_PHONE_ID})
        sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                                json={"message": f"fails later with {code}", "phoneIndex": 1})
        assert sent.status_code == 202, sent.text
        failed[code] = sent.json()["messageId"]
        await system.wait_message(failed[code], "failed")
    sources = await system.db.fetch(
        """SELECT m.message_id, h.source FROM message_status_history h JOIN messages m ON m.id = h.message_pk
           WHERE m.message_id = ANY($1::text[]) AND h.to_status = 'failed'""", list(failed.values()))
    assert {r["source"] for r in sources} == {"meta-webhook"}, sources
    # A message failed by its job (an answered 131026) is a failed job, not one of these.
    system.emulator.admin("POST", "/rules", json={"code": 131026, "times": 1, "phone_number_id": META_PHONE_ID})
    by_job = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                              json={"message": "fails at once", "phoneIndex": 1})
    assert by_job.status_code == 202, by_job.text
    await system.wait_message(by_job.json()["messageId"], "failed")

    page = await signed_in(operator, system)
    await page.goto(system.url + "/dashboard/queues")
    row = page.locator(f'#provider-failed tr[data-message="{failed[131049]}"]')
    await row.wait_for()
    assert "acme · phone 1 · meta" in await row.inner_text()
    assert await row.locator('[data-field="error"] .code-name[data-code="131049"]').count() == 1
    assert await page.locator(f'#provider-failed tr[data-message="{failed[131026]}"] .code-name').inner_text() \
        == " (not deliverable)"
    assert await page.locator(f'#provider-failed tr[data-message="{by_job.json()["messageId"]}"]').count() == 0
    # Newest first.
    shown = await page.locator("#provider-failed tbody tr").evaluate_all("rows => rows.map(r => r.dataset.message)")
    assert shown.index(failed[131026]) < shown.index(failed[131049]), shown

    # Filters: error code, phone, company.
    await page.fill("#pf-code", "131049")
    await page.click("#pf-filters button[type=submit]")
    await page.locator(f'#provider-failed tr[data-message="{failed[131026]}"]').wait_for(state="detached")
    assert await page.locator("#provider-failed tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.code)") == ["131049"]
    await page.fill("#pf-code", "")
    await page.fill("#pf-phone", "0")
    await page.click("#pf-filters button[type=submit]")
    await page.locator("#provider-failed td.muted", has_text="matching the filters").wait_for()
    await page.fill("#pf-phone", "")
    await page.fill("#pf-company", "beta")
    await page.click("#pf-filters button[type=submit]")
    await page.locator("#provider-failed td.muted", has_text="matching the filters").wait_for()
    await page.fill("#pf-company", "")

    # A company sees only its own; another company's filter is refused.
    own = await system.api("GET", "/dashboard/api/provider-failures", acme)
    assert own.status_code == 200, own.text
    assert {m["messageId"] for m in own.json()["messages"]} >= set(failed.values())
    assert own.json()["windowDays"] == 7
    other = await system.api("GET", "/dashboard/api/provider-failures", beta)
    assert other.status_code == 200 and other.json()["messages"] == [] and other.json()["total"] == 0
    # Another company is not there at all for it (as elsewhere: no hint that it exists).
    assert (await system.api("GET", "/dashboard/api/provider-failures?company=acme", beta)).status_code == 404
    one = await system.api("GET", "/dashboard/api/provider-failures?limit=1&start=1", ADMIN_KEY)
    assert one.status_code == 200 and len(one.json()["messages"]) == 1 and one.json()["total"] >= 2
    assert one.json()["messages"][0]["messageId"] == failed[131049]
    past = await system.api("GET", "/dashboard/api/provider-failures?start=500", ADMIN_KEY)
    assert past.json()["messages"] == [] and past.json()["total"] == one.json()["total"]
    for bad in ("limit=0", "start=-1", "phone=x", "code=a%20b"):
        answer = await system.api("GET", f"/dashboard/api/provider-failures?{bad}", ADMIN_KEY)
        assert answer.status_code == 422, (bad, answer.text)

    async for narrow in narrow_page(browser, system):
        await narrow.goto(system.url + "/dashboard/queues")
        await narrow.locator(f'#provider-failed tr[data-message="{failed[131049]}"] .code-name').wait_for()
        await fits(narrow)
        assert await shared.serious_violations(narrow, axe_script) == []
