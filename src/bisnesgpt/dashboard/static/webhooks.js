/* Webhooks: tenant endpoints listed with their health; add one (secret shown once), send a
   signed test now (its answer shown in the row), re-enable a disabled one, remove (confirmed);
   manage one: edit, its delivery log (paged, retry a dead delivery), replay a range, rotate the secret. */
"use strict";

(function () {
  const { el, badge, fmt } = BG;
  const filter = BG.companyFilter("webhook-company-filter", "webhook-company-filter-label");
  const newCompany = document.getElementById("new-webhook-company");
  const form = document.getElementById("new-webhook");
  const tests = {};  // endpoint id -> the last test's answer (kept across re-renders)
  if (BG.kind !== "admin") document.getElementById("new-webhook-company-label").hidden = true;

  function stateCell(e) {
    if (!e.enabled) return [badge("disabled", "disabled"), e.disabled_reason ? el("div", { class: "small error" }, e.disabled_reason) : null];
    if (e.health.consecutive_failures) {
      return [badge("error", "failing"), el("div", { class: "small error" }, e.health.consecutive_failures + " failed deliveries in a row")];
    }
    return [badge("ready", "enabled"), el("div", { class: "small muted" },
      e.health.last_success_at ? "last delivered " + fmt.ago(e.health.last_success_at) : "nothing delivered yet")];
  }

  function testCell(e) {
    const t = tests[e.id];
    if (!t) return el("span", { class: "muted" }, "–");
    return el("span", { class: t.ok ? "" : "error", dataset: { test: t.ok ? "ok" : "failed" } },
      (t.statusCode ? "HTTP " + t.statusCode : "no answer") + " in " + t.durationMs + " ms" + (t.error ? ": " + t.error : ""));
  }

  function row(e) {
    const path = "/dashboard/api/webhooks/" + encodeURIComponent(e.id);
    return el("tr", { id: "webhook-" + e.id, dataset: { webhook: e.id, enabled: String(e.enabled) } },
      el("th", { scope: "row" }, el("div", {}, el("span", { class: "mono" }, e.url),
        el("div", { class: "small muted" }, e.id + (e.description ? " · " + e.description : "")),
        el("div", { class: "small muted" }, e.all_events ? "every event" : e.events.join(", ")))),
      el("td", {}, e.company_id),
      el("td", {}, el("div", {}, stateCell(e))),
      el("td", { dataset: { field: "test" } }, testCell(e)),
      el("td", { class: "actions" },
        el("button", { dataset: { action: "test" }, onclick: async () => {
          const result = await BG.act(path + "/test", { done: (r) => (r.ok ? "test delivered: HTTP " + r.statusCode : "test failed: " + (r.error || "HTTP " + r.statusCode)) });
          if (result) { tests[e.id] = result; await BG.load(); }
        } }, "Send test"),
        e.enabled ? null : el("button", { dataset: { action: "enable" }, onclick: () => BG.act(path + "/enable", {
          done: () => "endpoint enabled; waiting deliveries resume" }) }, "Enable"),
        el("button", { dataset: { action: "manage" }, onclick: () => manage.open(e) }, "Manage"),
        el("button", { class: "danger", dataset: { action: "remove" }, onclick: () => BG.act(path + "/remove", {
          confirmText: "Remove the endpoint " + e.url + " of " + e.company_id + "? Its delivery log is deleted and no more events are sent to it.",
          okLabel: "Remove", done: () => "endpoint removed" }) }, "Remove")));
  }

  BG.load = async function () {
    const query = new URLSearchParams();
    const company = filter.select.value || (filter.unfilled() ? BG.params.get("company") : null);
    if (company) query.set("company", company);
    const [data, companies] = await Promise.all([BG.api("/dashboard/api/webhooks?" + query),
      newCompany.options.length ? null : BG.api("/dashboard/api/companies")]);
    if (companies) {
      companies.companies.forEach((c) => newCompany.append(el("option", { value: c.id }, c.name + " (" + c.id + ")")));
      if (filter.unfilled()) { filter.fill(companies.companies); BG.preset(filter.select, "company"); }
    }
    document.querySelector("#webhooks tbody").replaceChildren(...(data.endpoints.length ? data.endpoints.map(row)
      : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No webhook endpoints" + (company ? " for this company." : ".")))]));
    const current = manage.id && data.endpoints.find((e) => e.id === manage.id);
    if (manage.id && !current) manage.close();
    else if (current) { manage.show(current); await manage.deliveries(); }
    if (location.hash && !BG._scrolled) {  // a link from the attention strip names the endpoint's row
      const target = document.getElementById(location.hash.slice(1));
      if (target) { BG._scrolled = true; target.scrollIntoView(); }
    }
  };


  /* --- one endpoint: edit, deliveries, retry, replay, rotate ----------------------------- */
  const panel = document.getElementById("webhook-manage");
  const $ = (id) => document.getElementById(id);
  const manage = {
    id: null,
    before: null,
    nextBefore: null,
    base() { return "/dashboard/api/webhooks/" + encodeURIComponent(manage.id); },
    async open(e) {
      manage.id = e.id;
      manage.before = null;
      $("wm-secret-shown").hidden = true;
      $("wm-error").hidden = true;
      $("wm-url").value = e.url;
      $("wm-events").value = e.all_events ? "" : e.events.join(", ");
      $("wm-enabled").checked = e.enabled;
      manage.show(e);
      panel.hidden = false;
      await manage.deliveries();
      panel.scrollIntoView();
      $("wm-url").focus();
    },
    show(e) {
      $("wm-id").textContent = e.id;
      panel.dataset.endpoint = e.id;
      const until = e.secret_rotation.previous_secret_valid_until;
      $("wm-rotation").textContent = until ? "Rotated: the previous secret keeps signing too until " + fmt.time(until) + "."
        : "One signing secret. Rotating makes a new one; the old one keeps signing for the overlap so the receiver can switch.";
    },
    close() { manage.id = null; panel.hidden = true; delete panel.dataset.endpoint; },
    async deliveries() {
      const query = new URLSearchParams({ limit: "20" });
      if ($("wm-status").value) query.set("status", $("wm-status").value);
      if (manage.before) query.set("before", String(manage.before));
      const data = await BG.api(manage.base() + "/deliveries?" + query);
      manage.nextBefore = data.nextBefore;
      $("wm-older").disabled = !data.nextBefore;
      $("wm-newest").disabled = !manage.before;
      $("wm-counts").textContent = Object.entries(data.counts).map(([k, v]) => k + " " + v).join(" · ");
      $("wm-deliveries").querySelector("tbody").replaceChildren(...(data.deliveries.length ? data.deliveries.map(deliveryRow)
        : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No deliveries" + ($("wm-status").value ? " " + $("wm-status").value : "") + "."))]));
    },
  };

  function deliveryRow(d) {
    const answer = d.last_status_code ? "HTTP " + d.last_status_code : (d.last_error ? "no answer" : "–");
    return el("tr", { dataset: { delivery: String(d.id), status: d.status } },
      el("td", { class: "small" }, el("div", { class: "mono" }, d.event_type), el("div", { class: "muted" }, d.event_id + (d.origin === "replay" ? " · replay" : ""))),
      el("td", { dataset: { field: "status" } }, badge(d.status === "delivered" ? "ready" : d.status === "dead" ? "error" : "degraded", d.status)),
      el("td", { dataset: { field: "attempts" } }, String(d.attempts)),
      el("td", { class: "small", dataset: { field: "response" } }, answer, d.last_error ? el("div", { class: "error" }, d.last_error) : null,
        d.last_response_excerpt ? el("details", { class: "job-details" }, el("summary", {}, "body"), el("pre", { class: "small mono" }, d.last_response_excerpt)) : null),
      el("td", { class: "small" }, d.last_attempt_at ? fmt.time(d.last_attempt_at) : "–"),
      el("td", { class: "actions" }, d.status === "dead" ? el("button", { dataset: { action: "retry-delivery" }, onclick: () =>
        BG.act(manage.base() + "/deliveries/" + d.id + "/retry", { done: () => "delivery " + d.id + " queued again" }) }, "Retry") : null));
  }

  $("wm-close").addEventListener("click", () => manage.close());
  $("wm-status").addEventListener("change", () => { manage.before = null; manage.deliveries().catch((e) => BG.toast(e.message, "error")); });
  $("wm-older").addEventListener("click", () => { manage.before = manage.nextBefore; manage.deliveries().catch((e) => BG.toast(e.message, "error")); });
  $("wm-newest").addEventListener("click", () => { manage.before = null; manage.deliveries().catch((e) => BG.toast(e.message, "error")); });
  $("wm-edit").addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = $("wm-events").value.split(",").map((t) => t.trim()).filter(Boolean);
    try {
      await BG.post(manage.base() + "/edit", { url: $("wm-url").value.trim(), events, enabled: $("wm-enabled").checked });
      $("wm-error").hidden = true;
      BG.toast("endpoint saved", "ok");
      await BG.load();
    } catch (failure) {
      $("wm-error").textContent = failure.message;
      $("wm-error").hidden = false;
    }
  });
  $("wm-replay").addEventListener("submit", (event) => {
    event.preventDefault();
    const since = new Date($("wm-since").value);
    const until = $("wm-until").value ? new Date($("wm-until").value) : null;
    BG.act(manage.base() + "/replay", {
      confirmText: "Deliver the events from " + since.toLocaleString() + (until ? " until " + until.toLocaleString() : " until now") + " to this endpoint again?",
      okLabel: "Replay", payload: { since: since.toISOString(), until: until ? until.toISOString() : null },
      done: (r) => r.replayed + " event(s) queued again" + (r.hasMore ? "; more remain: replay again from " + fmt.time(r.continueSince) : "") });
  });
  $("wm-rotate").addEventListener("click", async () => {
    const rotated = await BG.act(manage.base() + "/rotate-secret", {
      confirmText: "Make a new signing secret for " + manage.id + "? The old one keeps signing for the overlap only: give the receiver the new one.",
      okLabel: "Rotate", done: () => "secret rotated" });
    if (!rotated) return;
    $("wm-secret").value = rotated.secret;
    $("wm-overlap-until").textContent = rotated.previousSecretValidUntil ? fmt.time(rotated.previousSecretValidUntil) : "now (no overlap)";
    $("wm-secret-shown").hidden = false;
    $("wm-secret").select();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("webhook-error");
    try {
      const created = await BG.post("/dashboard/api/webhooks", {
        companyId: BG.kind === "admin" ? newCompany.value : null, url: document.getElementById("new-webhook-url").value.trim(),
        description: document.getElementById("new-webhook-description").value.trim() });
      error.hidden = true;
      form.reset();
      document.getElementById("new-webhook-secret").value = created.secret;
      document.getElementById("new-webhook-shown").hidden = false;
      await BG.load();
      document.getElementById("new-webhook-secret").select();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
  filter.select.addEventListener("change", () => BG.load().catch((e) => BG.toast(e.message, "error")));
})();
