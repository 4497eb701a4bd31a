"""The dashboard in a real browser against the running system: every page and action an operator uses.

One system for the module (``tests/support/dashboard.py``): the real orchestrator with
api, wwebjs (sandbox driver) and meta (pointed at the Cloud API emulator), and Debian's
Chromium driven by Playwright. The tests run in file order; the kill -9 tests come last.
Screenshots of every page go to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import dashboard as shared
from tests.support.dashboard import (
    ADMIN_KEY,
    CHROMIUM,
    CONTACT,
    LIVE_TIMEOUT_MS,
    META_PHONE_ID,
    DashboardSystem,
    screenshot,
    serious_violations,
    sign_in,
    strip_item,
    wait_status,
)
from tests.support.procs import free_port

pytest.importorskip("playwright.async_api", reason="playwright is a dev dependency")

# The running system, the browser, a signed-in operator page and axe-core (tests/support/dashboard.py).
system = shared.system
browser = shared.browser
operator = shared.operator
_no_page_errors = shared._no_page_errors
axe_script = shared.axe_script

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)"),
]



async def test_sign_in_refuses_a_wrong_key_and_accepts_the_operator_key(system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.goto(system.url + "/dashboard")
    assert "/dashboard/login" in page.url  # not signed in: sent to the sign-in page
    await screenshot(page, "login", into=system.workdir / "screenshots")

    refused = await sign_in(page, system.url, "bgpt_not-a-real-key")
    assert refused.status == 401
    assert "not accepted" in await page.inner_text("#login-error")
    assert not [c for c in await page.context.cookies() if c["name"] == "bgpt_dashboard"]

    accepted = await sign_in(page, system.url, ADMIN_KEY)
    assert accepted.status == 303
    await page.wait_for_url("**/dashboard/processes")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "bgpt_dashboard")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert time.time() + 3600 < cookie["expires"] < time.time() + 13 * 3600  # DASHBOARD_SESSION_HOURS=12

    # The paths operators know lead to the pages.
    for old, new in (("/status", "/dashboard/processes"), ("/queue", "/dashboard/queues"),
                     ("/meta-status", "/dashboard/phones?type=cloud")):
        await page.goto(system.url + old)
        assert page.url == system.url + new

    # An action with the session cookie but without the page's CSRF token is refused.
    response = await page.request.post(system.url + "/dashboard/api/queues/meta-messages/pause",
                                       data={"confirm": True})
    assert response.status == 403
    assert "CSRF" in (await response.json())["detail"]
    # /docs is served from the vendored Swagger UI.
    await page.goto(system.url + "/docs")
    await page.wait_for_selector(".swagger-ui .information-container")
    await screenshot(page, "docs", into=system.workdir / "screenshots", full_page=False)


async def test_process_cards_show_every_role_healthy(system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.goto(system.url + "/dashboard/processes")
    for name in ("api", "wwebjs", "meta"):
        await wait_status(page, f'[data-process="{name}"]', ("healthy",))
        pid = await page.inner_text(f'[data-process="{name}"] [data-field="pid"]')
        assert int(pid) == system.run.pid_of(name)  # type: ignore[union-attr]
    await page.wait_for_selector('#live[data-state="live"]')
    assert await page.inner_text("#overall") == "healthy"
    await page.wait_for_selector('[data-chart="rss"] .uplot')  # RSS per role, from process_metrics


async def test_latency_axis_reads_in_minutes_past_100000_ms_and_its_labels_fit(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    # Latencies of minutes (a backlog drained slowly): p50 2.5 min, p99 4 min a few minutes ago.
    await system.db.execute(
        """INSERT INTO process_metrics (process_name, metric_name, metric_value, timestamp, metadata)
           VALUES ('meta', 'send_latency_p50_ms', 150000, now() - interval '3 minutes', '{"provider": "meta"}'),
                  ('meta', 'send_latency_p99_ms', 240000, now() - interval '3 minutes', '{"provider": "meta"}')""")
    await page.goto(system.url + "/dashboard/processes")
    await page.wait_for_selector('[data-chart="latency"] .uplot')
    axis = await page.evaluate(
        """() => { const box = document.querySelector('[data-chart="latency"]'); const ax = box.plot.axes[1];
                   const ctx = document.createElement('canvas').getContext('2d'); ctx.font = ax.font[0];
                   const ratio = window.devicePixelRatio || 1;
                   return { unit: box.dataset.unit, labels: ax._values, size: ax._size, room: ax.ticks.size + ax.gap,
                            widest: Math.max(...ax._values.map(v => ctx.measureText(v).width)) / ratio }; }""")
    assert axis["unit"] == "min"
    assert axis["labels"] and all(label.endswith(" min") for label in axis["labels"]), axis
    assert axis["widest"] + axis["room"] <= axis["size"], axis  # no label clipped at the canvas edge
    assert "(min)" in await page.inner_text('[data-chart="latency"] figcaption')


async def test_pages_still_work_without_the_live_stream(system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.route("**/dashboard/api/live", lambda route: route.abort())
    try:
        await page.goto(system.url + "/dashboard/processes")
        await wait_status(page, '[data-process="meta"]', ("healthy",))
        await page.wait_for_selector('#live[data-state="reconnecting"]')
        assert "reconnecting" in await page.inner_text("#live")
        await page.goto(system.url + "/dashboard/queues")
        await page.wait_for_selector('#queues tr[data-queue="meta-messages"]')
    finally:
        await page.unroute("**/dashboard/api/live")
    page.problems.clear()  # the aborted stream requests are expected here


async def test_wwebjs_phone_shows_a_qr_and_flips_to_ready_live_after_a_cli_scan(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.goto(system.url + "/dashboard/phones")
    await page.evaluate("window.__sameDocument = true")
    image = page.locator('[data-phone="acme:0"][data-status="qr"] img[data-qr]')
    await image.wait_for()
    await page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=await image.element_handle())
    await screenshot(page, "phones-qr", into=system.workdir / "screenshots")

    code, out = await system.cli("sandbox", "wweb", "scan", "acme", "0", "--url", system.sandbox.url)  # type: ignore[union-attr]
    assert code == 0, out
    await wait_status(page, '[data-phone="acme:0"]', ("ready",))
    assert await page.evaluate("window.__sameDocument === true")  # updated live, no reload
    assert await page.locator('[data-phone="acme:0"] img[data-qr]').count() == 0
    assert await page.locator('[data-phone="beta:0"][data-status="qr"]').count() == 1  # the other one still waits

    # The Cloud API phone: verify asks the emulator for the number's status and quality.
    await page.click('[data-phone="acme:1"] button[data-action="verify"]')
    await wait_status(page, '[data-phone="acme:1"]', ("ready",))
    card = await page.inner_text('[data-phone="acme:1"]')
    assert "GREEN" in card and "Emulated Business" in card and "VERIFIED" in card
    asked = system.emulator.requests(operation="phone_number", phone_number_id=META_PHONE_ID)  # type: ignore[union-attr]
    assert asked and asked[-1]["http_status"] == 200
    await screenshot(page, "phones", into=system.workdir / "screenshots")


async def test_failed_job_is_retried_from_the_queue_page_and_its_message_is_sent(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    acme = system.keys["acme"]
    system.emulator.admin("POST", "/rules", json={"code": 131026, "times": 1,  # type: ignore[union-attr]
                                                  "phone_number_id": META_PHONE_ID})
    sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                            json={"message": "retry me", "phoneIndex": 1})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["messageId"]
    await system.wait_message(message_id, "failed")

    await page.goto(system.url + "/dashboard/queues")
    row = page.locator(f'#failed tr[data-job="{message_id}"]')
    await row.wait_for()
    assert await page.input_value("#failed-queue") == "meta-messages"
    assert "131026" in await row.inner_text()
    # The job's error and the message's stored error say the same: it is shown once.
    assert (await row.locator("td").nth(2).inner_text()).count("131026") == 1
    await screenshot(page, "queues", into=system.workdir / "screenshots")

    await row.locator('button[data-action="retry"]').click()
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    await system.wait_message(message_id, "sent")
    await row.wait_for(state="detached")
    # Completed jobs are removed as they finish: "Completed" counts the last hour's from the
    # queue's event stream (the retried job at least), and there is nothing kept to clean.
    meta_row = '#queues tr[data-queue="meta-messages"]'
    await page.wait_for_function(
        "sel => Number(document.querySelector(sel + ' [data-count=\"completed\"]').firstChild.textContent) >= 1",
        arg=meta_row)
    assert await page.locator(f'{meta_row} button[data-action="clean-completed"]').is_disabled()

    detail = (await system.api("GET", f"/api/v1/messages/{message_id}", acme)).json()
    steps = [(h["fromStatus"], h["toStatus"], h["source"]) for h in detail["history"]]
    assert ("failed", "queued", "operator") in steps, steps
    assert steps.index(("failed", "queued", "operator")) < [s[1] for s in steps].index("sent")
    assert detail["error"] is None  # the message is no longer failed; the old error is in the history row

    await page.goto(f"{system.url}/dashboard/messages?company=acme&id={message_id}")
    await page.wait_for_selector('#timeline li[data-to="sent"]')
    timeline = await page.inner_text("#timeline")
    assert "131026" in timeline and "operator" in timeline
    await screenshot(page, "messages", into=system.workdir / "screenshots")


async def test_attention_strip_lists_a_phone_waiting_to_be_linked_with_its_backlog_and_failing_webhooks(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    # beta's phone still waits for its QR scan: a phone item, and once a message waits, a backlog.
    sent = await system.api("POST", f"/api/v2/messages/text/beta/{CONTACT}", system.keys["beta"],
                            json={"message": "waits for the session", "phoneIndex": 0})
    assert sent.status_code == 202, sent.text
    await page.goto(system.url + "/dashboard/queues")  # every page has the strip
    await strip_item(page, "phone", "beta", 0).wait_for()
    assert "waiting to be linked" in await strip_item(page, "phone", "beta", 0).inner_text()
    backlog = strip_item(page, "backlog", "beta", 0)
    await backlog.wait_for(timeout=20_000)  # re-read every 10 s; the oldest must be 2 s old first
    text = await backlog.inner_text()
    assert "1 message(s) waiting" in text and "session not ready (qr)" in text, text
    assert await backlog.locator("a").get_attribute("href") == "/dashboard/phones?company=beta#phone-beta-0"
    await backlog.locator("a").click()
    await page.wait_for_selector('#phone-cards [data-phone="beta:0"]')
    assert await page.locator('#phone-cards [data-phone^="acme:"]').count() == 0  # filtered to the company

    # A webhook endpoint that refuses every delivery (nothing listens on its port).
    created = await system.api("POST", "/api/v1/webhooks", system.keys["acme"],
                               json={"url": f"http://127.0.0.1:{free_port()}/hook"})
    assert created.status_code == 201, created.text
    endpoint = created.json()["id"]
    await system.wait_message(
        (await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", system.keys["acme"],
                          json={"message": "an event to deliver", "phoneIndex": 1})).json()["messageId"], "sent")
    await page.goto(system.url + "/dashboard/messages")
    failing = strip_item(page, "webhook", "acme")
    await failing.wait_for(timeout=20_000)
    assert "failed deliveries in a row" in await failing.inner_text()
    assert await page.get_attribute("#attention", "data-state") == "attention"
    # A company key sees its own company's items only.
    mine = (await system.api("GET", "/dashboard/api/attention", system.keys["acme"])).json()["items"]
    assert mine and {i["companyId"] for i in mine} == {"acme"}
    assert (await system.api("DELETE", f"/api/v1/webhooks/{endpoint}", system.keys["acme"])).status_code == 204
    await page.reload()
    await page.wait_for_selector('#attention-count:not([data-status="unknown"])')
    assert await strip_item(page, "webhook", "acme").count() == 0


async def cloud_card(page: Any, system: DashboardSystem, status: str) -> str:
    """Open the phones page and wait for the Cloud API phone's card to show ``status``; its badge's text."""
    await page.goto(system.url + "/dashboard/phones")
    await wait_status(page, '[data-phone="acme:1"]', (status,))
    return str(await page.inner_text('[data-phone="acme:1"] .badge'))


async def test_cloud_phone_status_follows_sends_pauses_and_bad_tokens(system: DashboardSystem, operator: Any) -> None:
    page = operator
    acme = system.keys["acme"]

    async def send(text: str) -> str:
        answer = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                                  json={"message": text, "phoneIndex": 1})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["messageId"])

    async def bot_status() -> dict[str, Any]:
        answer = await system.api("GET", "/api/bot-status/acme", acme)
        return next(p for p in answer.json()["phones"] if p["phoneIndex"] == 1)

    # Sends go through: connected, and "last seen" is the last message (a relative time that ticks).
    await system.wait_message(await send("status: before"), "sent")
    assert await cloud_card(page, system, "ready") == "connected"
    seen = page.locator('[data-phone="acme:1"] [data-field="last-seen"]')
    assert (await seen.inner_text()).endswith("ago")
    await seen.evaluate("n => { n.dataset.ago = new Date(Date.now() - 3 * 3600 * 1000).toISOString(); }")
    await page.wait_for_function("n => n.textContent.startsWith('3h')", arg=await seen.element_handle(),
                                 timeout=10_000)

    # 368: the phone is paused until a time; verify does not hide it; the API and the CLI agree.
    system.emulator.admin("POST", "/rules", json={"code": 368, "times": 1,  # type: ignore[union-attr]
                                                  "phone_number_id": META_PHONE_ID})
    await system.wait_message(await send("status: blocked"), "failed")
    held = await send("status: held")
    badge = await cloud_card(page, system, "paused")
    assert badge.startswith("paused until "), badge
    bot = await bot_status()
    assert bot["status"] == "paused" and bot["pausedUntil"] and "368" in bot["error"]
    code, out = await system.cli("phones", "list", "acme", COLUMNS="240")  # a table as wide as a terminal
    assert code == 0 and "paused until" in out, out
    await page.click('[data-phone="acme:1"] button[data-action="verify"]')
    await page.wait_for_selector('#toast[data-kind="ok"]')
    assert (await cloud_card(page, system, "paused")).startswith("paused until ")
    assert await system.message_status(held) == "queued"  # held back by the pause
    # The strip says so, with the backlog's reason; the worst card comes first.
    await strip_item(page, "phone", "acme", 1).wait_for()
    assert "sending paused until" in await strip_item(page, "phone", "acme", 1).inner_text()
    await page.reload()
    await strip_item(page, "backlog", "acme", 1).wait_for(timeout=20_000)
    assert "phone paused" in await strip_item(page, "backlog", "acme", 1).inner_text()
    assert await page.locator("#phone-cards article").first.get_attribute("data-phone") == "acme:1"

    # Resume: the held message goes out and the phone is connected again.
    await page.click('[data-phone="acme:1"] button[data-action="resume"]')
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    await system.wait_message(held, "sent", timeout=30)
    assert await cloud_card(page, system, "ready") == "connected"
    assert (await bot_status())["status"] == "ready"
    await page.wait_for_selector('#attention-count:not([data-status="unknown"])')
    assert await strip_item(page, "phone", "acme", 1).count() == 0
    assert await strip_item(page, "backlog", "acme", 1).count() == 0

    # 190: the token is refused: error, with the reason, until a send goes through again.
    system.emulator.admin("POST", "/rules", json={"code": 190, "times": 1,  # type: ignore[union-attr]
                                                  "phone_number_id": META_PHONE_ID})
    await system.wait_message(await send("status: bad token"), "failed")
    await cloud_card(page, system, "error")
    assert "190" in await page.inner_text('[data-phone="acme:1"]')
    assert (await bot_status())["status"] == "error"
    # The attention strip lists the broken phone (re-read every 10 s), with its reason.
    broken = strip_item(page, "phone", "acme", 1)
    await broken.wait_for(timeout=20_000)
    assert "phone 1: error" in (shown := await broken.inner_text()) and "190" in shown, shown
    # The "Disconnected" tile shows the broken phones only; pressed again, every phone.
    await page.click('#counts [data-count="disconnected"]')
    assert await page.locator("#phone-cards article").count() == 1
    assert await page.get_attribute('#counts [data-count="disconnected"]', "aria-pressed") == "true"
    await page.click('#counts [data-count="disconnected"]')
    assert await page.locator("#phone-cards article").count() == 3
    await system.wait_message(await send("status: after"), "sent")
    assert await cloud_card(page, system, "ready") == "connected"
    await broken.wait_for(state="detached", timeout=20_000)  # and clears it once sends succeed again


async def test_queue_browser_pages_every_state_shows_a_job_promotes_and_retries_filtered_failures(
        system: DashboardSystem, operator: Any) -> None:
    from bullmq import Queue

    page = operator
    # 21 delayed jobs in a queue nobody reads for ten minutes: two pages of them.
    queue = Queue("webhook-events", {"connection": system.redis_url})
    ids = [f"browse-{i:02d}" for i in range(21)]
    try:
        for job_id in ids:
            await queue.add("webhook-event", {"probe": job_id}, {"jobId": job_id, "delay": 600_000})
        await page.goto(system.url + "/dashboard/queues")
        await page.select_option("#failed-queue", "webhook-events")
        await page.click('#job-states [data-state="delayed"]')
        await page.wait_for_selector('#failed[data-state="delayed"] tr[data-state="delayed"]')
        assert await page.locator("#failed tbody tr").count() == 20
        assert await page.inner_text("#job-page") == "1-20 of 21"
        await page.click("#job-next")
        await page.wait_for_function("() => document.querySelector('#job-page').textContent === '21-21 of 21'")
        row = page.locator("#failed tbody tr").first
        job_id = await row.get_attribute("data-job")
        await row.locator("summary").click()
        assert '"delay": 600000' in await row.locator(".job-details").inner_text()
        await row.locator('button[data-action="promote"]').click()
        await page.click("#confirm-ok")
        await page.wait_for_selector('#toast[data-kind="ok"]')
        assert await queue.getJobState(job_id) != "delayed"
    finally:
        for job_id in ids:
            await queue.remove(job_id)
        await queue.close()

    # Failed send jobs of the Cloud API phone (368 and 190 above), filtered by error code.
    await page.select_option("#failed-queue", "meta-messages")
    await page.click('#job-states [data-state="failed"]')
    await page.fill("#f-code", "190")
    await page.click('#job-filters button[type="submit"]')
    await page.wait_for_function("() => document.querySelector('#job-page').textContent === '1-1 of 1'")
    bad_token = await page.locator("#failed tbody tr").first.get_attribute("data-job")
    assert "190" in await page.inner_text("#failed tbody")
    await page.fill("#f-company", "beta")
    await page.click('#job-filters button[type="submit"]')
    await page.wait_for_selector('#failed tbody td:has-text("matching the filters")')
    await page.fill("#f-company", "acme")
    await page.click('#job-filters button[type="submit"]')
    await page.wait_for_function("() => document.querySelector('#job-page').textContent === '1-1 of 1'")
    # Retry these: only the filtered job goes again (the token is fine now), the 368 one stays failed.
    await page.click("#retry-these")
    await page.click("#confirm-ok")
    await page.wait_for_selector('#toast[data-kind="ok"]:has-text("retried 1")')
    assert bad_token is not None
    await system.wait_message(bad_token, "sent")
    await page.fill("#f-company", "")
    await page.fill("#f-code", "368")
    await page.click('#job-filters button[type="submit"]')
    await page.wait_for_function("() => document.querySelector('#job-page').textContent === '1-1 of 1'")


async def test_message_list_filters_searches_by_part_of_an_id_number_or_text_and_shows_new_messages(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.goto(system.url + "/dashboard/messages")
    await page.wait_for_selector("#results tbody tr[data-message-id]")
    rows = page.locator("#results tbody tr[data-message-id]")

    form: dict[str, str] = {}

    async def apply(**fields: str) -> None:
        for name, value in fields.items():
            control = page.locator(f"#f-{name}")
            if await control.evaluate("n => n.tagName") == "SELECT":
                await control.select_option(value)
            else:
                await control.fill(value)
            form[name] = value
        form["q"] = (await page.input_value("#q")).strip()
        await page.click('#search button[type="submit"]')
        # The list also re-reads itself every 5 s: wait until it shows the answer to the form as it is now.
        await page.wait_for_function(
            """wanted => { const shown = document.getElementById("results").dataset.shown;
                           if (shown === undefined) return false;
                           const got = Object.fromEntries(new URLSearchParams(shown)); delete got.company;
                           const same = (o) => JSON.stringify(Object.entries(o).sort());
                           return same(got) === same(wanted); }""",
            arg={k: v for k, v in form.items() if v})

    # Outbound Cloud API messages only: every row is acme's phone 1, going out.
    await apply(direction="outbound", engine="meta")
    texts = await rows.all_inner_texts()
    assert texts and all("acme / 1" in t for t in texts), texts
    directions = await page.locator("#results tbody tr[data-message-id] td:nth-child(4)").all_inner_texts()
    assert directions == ["out"] * len(texts)
    await apply(status="failed")
    statuses = await page.locator("#results tbody tr[data-message-id] td:nth-child(6) .badge").all_inner_texts()
    assert statuses and set(statuses) == {"failed"}, statuses
    await apply(status="", direction="", engine="")

    # Part of a text, of an id, of a number.
    await page.fill("#q", "status: bad")
    await apply()
    assert await page.inner_text("#results-title") == "1 message(s) matching the text"
    found = await rows.first.get_attribute("data-message-id")
    assert found is not None and "status: bad token" in await rows.first.inner_text()
    await page.fill("#q", found[-10:])
    await apply()
    assert [await r.get_attribute("data-message-id") for r in await rows.all()] == [found]
    await page.fill("#q", CONTACT[2:8])
    await apply()
    assert await rows.count() > 1 and "matching the text" in await page.inner_text("#results-title")

    # The unfiltered list is live: a new message appears without a reload.
    await page.fill("#q", "")
    await apply()
    sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", system.keys["acme"],
                            json={"message": "appears by itself", "phoneIndex": 1})
    assert sent.status_code == 202, sent.text
    await page.locator(f'#results tbody tr[data-message-id="{sent.json()["messageId"]}"]').wait_for(timeout=15_000)


async def test_company_user_sees_and_acts_on_its_own_phones_only(system: DashboardSystem, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        assert (await sign_in(page, system.url, system.keys["acme"])).status == 303
        await page.wait_for_url("**/dashboard/phones")
        await page.wait_for_selector('[data-phone="acme:0"]')
        assert await page.locator('[data-phone^="beta:"]').count() == 0
        assert await page.inner_text('[data-count="total"] strong') == "2"
        await screenshot(page, "phones-company-mobile", into=system.workdir / "screenshots")

        # The UI: operators' pages are refused.
        response = await page.goto(system.url + "/dashboard/queues")
        assert response.status == 403
        assert await page.locator("#forbidden").count() == 1

        # The endpoints behind it, with the session cookie and a valid CSRF token ...
        csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
        request = page.request
        for path in ("/dashboard/api/phones?company=beta", "/dashboard/api/phones/beta/0",
                     "/dashboard/api/phones/beta/0/qr.png", "/dashboard/api/messages?company=beta"):
            assert (await request.get(system.url + path)).status == 404, path
        for path in ("/dashboard/api/phones/beta/0/session/restart", "/dashboard/api/phones/beta/0/session/logout",
                     "/dashboard/api/phones/beta/0/remove"):
            answer = await request.post(system.url + path, headers=headers, data={"confirm": True})
            assert answer.status == 404, (path, answer.status)
        for path in ("/dashboard/api/queues", "/dashboard/api/processes", "/dashboard/api/charts"):
            assert (await request.get(system.url + path)).status == 403, path
        assert (await request.post(system.url + "/dashboard/api/queues/meta-messages/pause", headers=headers,
                                   data={"confirm": True})).status == 403
        # ... and with acme's API key instead of the cookie.
        for path in ("/dashboard/api/phones/beta/0", "/dashboard/api/phones/beta/0/qr.png"):
            assert (await system.api("GET", path, system.keys["acme"])).status_code == 404
        assert (await system.api("POST", "/dashboard/api/phones/beta/0/session/restart",
                                 system.keys["acme"])).status_code == 404
        # Its own phone works.
        own = await request.get(system.url + "/dashboard/api/phones/acme/0")
        assert own.status == 200 and (await own.json())["status"] == "ready"
    finally:
        await context.close()
    # Nothing was done to beta's session.
    assert await system.db.fetchval("SELECT count(*) FROM wwebjs_session_commands WHERE company_id = 'beta'") == 0
    assert await system.db.fetchval("SELECT count(*) FROM phone_configs WHERE company_id = 'beta'") == 1


async def test_pairing_code_button_shows_the_code_and_entering_it_links_the_phone(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    await page.goto(system.url + "/dashboard/phones")
    await wait_status(page, '[data-phone="beta:0"]', ("qr",))

    async def number(dialog: Any) -> None:
        await dialog.accept("+60 11-2233 4455")

    page.once("dialog", number)
    async with page.expect_response(lambda r: r.url.endswith("/beta/0/pairing-code")) as info:
        await page.click('[data-phone="beta:0"] button[data-action="pairing-code"]')
    answer = await info.value
    assert answer.status == 200, await answer.text()  # not 422 "confirm: Extra inputs are not permitted"
    code_node = page.locator('[data-phone="beta:0"] [data-pairing]')
    await code_node.wait_for()
    code = (await code_node.inner_text()).strip()
    assert code
    status, out = await system.cli("sandbox", "wweb", "scan", "beta", "0", "--code", code,
                                   "--url", system.sandbox.url)  # type: ignore[union-attr]
    assert status == 0, out
    await wait_status(page, '[data-phone="beta:0"]', ("ready",))
    # Linked: the phone item and its backlog (the waiting message goes out) leave the strip.
    await strip_item(page, "phone", "beta", 0).wait_for(state="detached", timeout=20_000)
    await strip_item(page, "backlog", "beta", 0).wait_for(state="detached", timeout=20_000)


async def test_no_page_is_wider_than_a_390px_screen_and_row_actions_stay_on_it(
        system: DashboardSystem, browser: Any) -> None:
    acme = system.keys["acme"]
    sent = await system.api("POST", f"/api/v2/messages/text/acme/{CONTACT}", acme,
                            json={"message": "narrow screen", "phoneIndex": 1})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["messageId"]
    await system.wait_message(message_id, "sent")
    # A provider status with a long unbroken JSON detail in the message's timeline.
    await system.db.execute(
        """INSERT INTO message_status_history (message_pk, from_status, to_status, source, detail, applied)
           SELECT id, 'sent', 'sent', 'meta', jsonb_build_object('raw', repeat('x', 400), 'pricing',
                  jsonb_build_object('category', repeat('service', 30))), false
           FROM messages WHERE message_id = $1""", message_id)

    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        assert (await sign_in(page, system.url, ADMIN_KEY)).status == 303
        pages = {"processes": "#process-cards [data-process]", "phones": "#phone-cards [data-phone]",
                 "queues": '#queues tr[data-queue="meta-messages"]',
                 f"messages?company=acme&id={message_id}": "#timeline li"}
        for path, ready in pages.items():
            await page.goto(f"{system.url}/dashboard/{path}")
            await page.wait_for_selector(ready)
            await page.wait_for_timeout(300)  # charts and late rows rendered
            widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], (path, widths)
            if path == "queues":
                for button in await page.locator('#queues tr[data-queue="meta-messages"] button').all():
                    box = await button.bounding_box()
                    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
                failed = page.locator('#queues tr[data-queue="meta-messages"] [data-count="failed"]')
                status = await failed.bounding_box()
                assert status is not None and status["x"] + status["width"] <= 390, status
            if path.startswith("messages"):
                assert await page.locator('#timeline li[data-to="sent"]').count() >= 2
        await screenshot(page, "messages-mobile", into=system.workdir / "screenshots")
    finally:
        await context.close()


async def test_alerts_and_the_operators_audit_trail_are_apart_and_a_lost_session_raises_an_alert(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    # acme's WhatsApp-Web session is dropped by the network: it reconnects by itself, and an alert stays.
    code, out = await system.cli("sandbox", "wweb", "fault", "acme", "0", "disconnect",
                                 "--url", system.sandbox.url)  # type: ignore[union-attr]
    assert code == 0, out
    await page.goto(system.url + "/dashboard/processes")
    alerts, audit = page.locator("#events tbody"), page.locator("#audit tbody")
    await alerts.locator('tr td:text-is("wwebjs_session_disconnected")').first.wait_for()
    await page.goto(system.url + "/dashboard/processes")  # the earlier tests' alerts and actions, read afresh
    await alerts.locator("tr td:nth-child(4)").first.wait_for()
    alert_types = await alerts.locator("tr td:nth-child(4)").all_inner_texts()
    assert {"wwebjs_session_disconnected", "webhook_endpoint_failing", "meta.phone.paused"} <= set(alert_types)
    assert not [t for t in alert_types if t.startswith("dashboard.")], alert_types
    actions = await audit.locator("tr td:nth-child(4)").all_inner_texts()
    assert {"dashboard.phone.resume", "dashboard.queue.retry", "dashboard.sign_in"} <= set(actions), actions
    assert all(t.startswith("dashboard.") for t in actions), actions
    await wait_status(page, '[data-process="wwebjs"]', ("healthy",))
    await page.goto(system.url + "/dashboard/phones")
    await wait_status(page, '[data-phone="acme:0"]', ("ready",), timeout=60_000)  # it reconnected


async def test_attention_strip_raises_a_disconnected_wwebjs_phone_and_clears_it_once_it_reconnects(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    # The network goes silent for acme's WhatsApp-Web session (its reconnects too): the engine drops
    # it, and the strip names the phone (disconnected, or in error once its reconnects count as flapping).
    code, out = await system.cli("sandbox", "wweb", "fault", "acme", "0", "hang", "--seconds", "120",
                                 "--url", system.sandbox.url)  # type: ignore[union-attr]
    assert code == 0, out
    await page.goto(system.url + "/dashboard/messages")  # every page has the strip
    item = strip_item(page, "phone", "acme", 0)
    await item.wait_for(timeout=45_000)
    text = await item.inner_text()
    assert "phone 0: disconnected" in text or "phone 0: error" in text, text
    assert await item.locator("a").get_attribute("href") == "/dashboard/phones?company=acme#phone-acme-0"
    # The network answers again; the operator restarts the session (which also closes the circuit
    # breaker, should the hang have counted as flapping): the item goes once the phone is ready.
    code, out = await system.cli("sandbox", "wweb", "fault", "acme", "0", "clear",
                                 "--url", system.sandbox.url)  # type: ignore[union-attr]
    assert code == 0, out
    restarted = await system.api("POST", "/api/sessions/acme/0/restart", ADMIN_KEY)
    assert restarted.status_code == 200, restarted.text
    await item.wait_for(state="detached", timeout=90_000)
    await page.goto(system.url + "/dashboard/phones")
    await wait_status(page, '[data-phone="acme:0"]', ("ready",), timeout=60_000)


async def test_no_page_has_serious_or_critical_accessibility_violations(
        system: DashboardSystem, browser: Any, axe_script: Path) -> None:
    # The pages' Content-Security-Policy forbids injected scripts; this browser context ignores it for axe.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(LIVE_TIMEOUT_MS)
    try:
        page = await context.new_page()
        await page.goto(system.url + "/dashboard/login")
        found = {"login": await serious_violations(page, axe_script)}
        assert (await sign_in(page, system.url, ADMIN_KEY)).status == 303
        found.update(await _violations_of_every_page(system, page, axe_script))
        await _keyboard_and_chart_alternatives(system, page)
    finally:
        await context.close()
    assert not any(found.values()), "\n".join(f"{page_name}: {v}" for page_name, vs in found.items() for v in vs)


async def _keyboard_and_chart_alternatives(system: DashboardSystem, page: Any) -> None:
    # The first Tab reaches the skip link, shown with a visible focus ring; it leads to the content.
    await page.goto(system.url + "/dashboard/processes")
    await page.wait_for_selector('[data-chart="rss"] .uplot')
    await page.keyboard.press("Tab")
    skip = await page.evaluate("""() => { const a = document.activeElement; const s = getComputedStyle(a);
        return { cls: a.className, outline: s.outlineStyle, top: a.getBoundingClientRect().top }; }""")
    assert skip["cls"] == "skip" and skip["outline"] != "none" and skip["top"] >= 0, skip
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    # Every chart with data has a summary (the canvas's label) and a table of its values.
    summary = await page.get_attribute('[data-chart="rss"] canvas', "aria-label")
    assert summary and summary.startswith("RSS per role.") and "latest" in summary, summary
    assert await page.locator('[data-chart="rss"] details table tbody tr').count() >= 1
    # Focus stays on the acted-on row: Pause becomes Resume, and the keyboard is still there.
    await page.goto(system.url + "/dashboard/queues")
    row = page.locator('#queues tr[data-queue="media-downloads"]')
    await row.locator('button[data-action="pause"]').focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    await row.locator('button[data-action="resume"]').wait_for()
    await page.wait_for_function("""() => document.activeElement.dataset.action === "resume"
        && document.activeElement.closest('tr').dataset.queue === "media-downloads" """)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    await row.locator('button[data-action="pause"]').wait_for()


async def _violations_of_every_page(system: DashboardSystem, page: Any, axe_script: Path) -> dict[str, list[str]]:
    pages = {"processes": '[data-chart="rss"] .uplot', "phones": "#phone-cards [data-phone]",
             "queues": '#queues tr[data-queue="meta-messages"]', "messages": "#results tbody tr[data-message-id]"}
    found: dict[str, list[str]] = {}
    for path, ready in pages.items():
        await page.goto(f"{system.url}/dashboard/{path}")
        await page.wait_for_selector(ready)
        await page.wait_for_selector('#attention-count:not([data-status="unknown"])')
        found[path] = await serious_violations(page, axe_script)
    await page.click("#results tbody tr[data-message-id]")
    await page.wait_for_selector("#timeline li")
    found["message detail"] = await serious_violations(page, axe_script)
    return found


async def test_meta_card_goes_down_and_back_to_healthy_without_a_reload_after_kill9(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    run = system.run
    assert run is not None
    await page.goto(system.url + "/dashboard/processes")
    await wait_status(page, '[data-process="meta"]', ("healthy",))
    await page.wait_for_selector('#live[data-state="live"]')
    await page.evaluate("window.__sameDocument = true")
    old_pid = run.pid_of("meta")
    assert old_pid is not None
    # By now one message failed and was sent after a retry: the charts have something to show.
    await page.wait_for_selector('[data-chart="sent"] .uplot')
    await page.wait_for_selector('[data-chart="failed"] .uplot')
    await screenshot(page, "processes", into=system.workdir / "screenshots")

    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    await wait_status(page, '[data-process="meta"]', ("down", "degraded", "unhealthy"))
    print(f"\n[measured] kill -9 meta -> card not healthy: {time.monotonic() - killed_at:.2f}s")
    await screenshot(page, "processes-meta-down", into=system.workdir / "screenshots")

    await wait_status(page, '[data-process="meta"]', ("healthy",), timeout=90_000)
    print(f"[measured] kill -9 meta -> card healthy again: {time.monotonic() - killed_at:.2f}s")
    assert await page.evaluate("window.__sameDocument === true")  # no reload
    new_pid = run.pid_of("meta")
    assert new_pid is not None and new_pid != old_pid
    await page.wait_for_function(
        "pid => document.querySelector('[data-process=\"meta\"] [data-field=\"pid\"]').textContent === String(pid)",
        arg=new_pid)


async def test_api_card_is_not_healthy_while_the_api_is_killed_and_the_page_says_its_data_is_stale(
        system: DashboardSystem, operator: Any) -> None:
    page = operator
    run = system.run
    assert run is not None
    await page.goto(system.url + "/dashboard/processes")
    await wait_status(page, '[data-process="api"]', ("healthy",))
    await page.wait_for_selector('#live[data-state="live"]')
    old_pid = run.pid_of("api")
    assert old_pid is not None

    os.kill(old_pid, signal.SIGKILL)
    await page.wait_for_selector('#live[data-state="reconnecting"]')
    await wait_status(page, '[data-process="api"]', ("unreachable",))
    assert await page.inner_text('[data-process="api"] .badge') == "unreachable"
    assert await page.get_attribute("#main", "data-stale") == "true"  # cards greyed
    assert await page.is_visible("#banner")
    assert "not answering" in await page.inner_text("#banner")

    # The orchestrator starts a new api; the stream reconnects and the card shows the new pid.
    await wait_status(page, '[data-process="api"]', ("healthy",), timeout=90_000)
    new_pid = run.pid_of("api")
    assert new_pid is not None and new_pid != old_pid
    await page.wait_for_function(
        "pid => document.querySelector('[data-process=\"api\"] [data-field=\"pid\"]').textContent === String(pid)",
        arg=new_pid)
    await page.wait_for_selector('#live[data-state="live"]')
    await page.wait_for_selector("#banner", state="hidden")
    assert await page.get_attribute("#main", "data-stale") is None
    page.problems.clear()  # the refused requests while the api was down are expected here
