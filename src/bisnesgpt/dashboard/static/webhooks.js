/* Webhooks: tenant endpoints listed with their health; add one (secret shown once), send a
   signed test now (its answer shown in the row), re-enable a disabled one, remove (confirmed). */
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
    if (location.hash && !BG._scrolled) {  // a link from the attention strip names the endpoint's row
      const target = document.getElementById(location.hash.slice(1));
      if (target) { BG._scrolled = true; target.scrollIntoView(); }
    }
  };

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
