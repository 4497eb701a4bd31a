/* Companies & API keys: create, disable / enable, send quotas (operators); keys created (shown
   once), listed and revoked (a company's own keys for its users). Every change is the API's. */
"use strict";

(function () {
  const { el, badge, fmt } = BG;
  const operator = BG.kind === "admin";
  const companyForm = document.getElementById("new-company");
  const keyForm = document.getElementById("new-key");
  const keyCompany = document.getElementById("new-key-company");
  if (!operator) companyForm.hidden = true;

  /* A form's error: the API's problem detail, kept in the form until the next try. */
  function formError(id, error) {
    const node = document.getElementById(id);
    node.textContent = error ? error.message : "";
    node.hidden = !error;
  }

  function quotaText(c) {
    const parts = [];
    if (c.sendQuotaPerMinute) parts.push(c.sendQuotaPerMinute + " / minute");
    if (c.sendQuotaPerDay) parts.push(c.sendQuotaPerDay + " / day");
    return parts.join(", ") || "none";
  }

  function quotaForm(c) {
    const id = "quota-" + c.id;
    const minute = el("input", { type: "number", min: 0, id: id + "-minute", value: c.sendQuotaPerMinute || "", size: 6 });
    const day = el("input", { type: "number", min: 0, id: id + "-day", value: c.sendQuotaPerDay || "", size: 7 });
    const number = (input) => (input.value === "" ? null : Number(input.value));
    return el("form", { class: "quota filters", onsubmit: (event) => {
      event.preventDefault();
      BG.act("/dashboard/api/companies/" + encodeURIComponent(c.id) + "/quota", {
        payload: { perMinute: number(minute), perDay: number(day) }, done: (r) => r.id + " send quota: " + quotaText(r) });
    } },
      el("label", { for: id + "-minute" }, "per minute"), minute,
      el("label", { for: id + "-day" }, "per day"), day,
      el("button", { type: "submit", class: "set-quota" }, "Set quota"));
  }

  function companyRow(c) {
    const path = "/dashboard/api/companies/" + encodeURIComponent(c.id);
    const toggle = c.status === "active"
      ? el("button", { class: "danger", dataset: { action: "disable" }, onclick: () => BG.act(path + "/disable", {
          confirmText: "Disable " + c.id + "? Its API keys and dashboard sign-ins are refused until it is enabled again.",
          okLabel: "Disable", done: () => c.id + " disabled" }) }, "Disable")
      : el("button", { dataset: { action: "enable" }, onclick: () => BG.act(path + "/enable", { done: () => c.id + " enabled" }) }, "Enable");
    return el("tr", { dataset: { companyRow: c.id, status: c.status } },
      el("th", { scope: "row" }, el("div", {}, c.name, el("div", { class: "small muted mono" }, c.id))),
      el("td", {}, el("div", {}, badge(c.status === "active" ? "ready" : "disabled", c.status))),
      el("td", { dataset: { field: "quota" } }, el("div", {}, quotaText(c), operator ? quotaForm(c) : null)),
      el("td", { class: "actions" }, operator ? toggle : el("span", { class: "muted small" }, "operators change companies")));
  }

  function limitsText(k) {
    if (k.role === "admin") return "operator: every company";
    return (k.scopes ? k.scopes.join(", ") : "every scope") + "; "
      + (k.phoneIndexes ? "phones " + k.phoneIndexes.join(", ") : "every phone") + "; "
      + (k.expiresAt ? "expires " + fmt.time(k.expiresAt) : "no expiry");
  }

  /* A key's limits, edited in place and replaced as a whole (scopes and phones: company keys
     only). The API answers 422 with what to fix; the change holds at once on every api process. */
  const SCOPES = [...document.querySelectorAll("#new-key-scopes input")].map((i) => i.value);
  function limitsForm(k) {
    const id = "key-" + k.id;
    const company = k.role !== "admin";
    const boxes = SCOPES.map((scope) => el("input", { type: "checkbox", value: scope, checked: !k.scopes || k.scopes.includes(scope) }));
    const phones = el("input", { id: id + "-phones", size: 8, autocomplete: "off", value: k.phoneIndexes ? k.phoneIndexes.join(", ") : "" });
    const expires = el("input", { id: id + "-expires", type: "date", value: k.expiresAt ? k.expiresAt.slice(0, 10) : "" });
    const error = el("p", { class: "small error", role: "alert", hidden: true });
    return el("details", { class: "key-limits" }, el("summary", {}, "Edit limits"),
      el("form", { class: "filters", onsubmit: async (event) => {
        event.preventDefault();
        const ticked = boxes.filter((b) => b.checked).map((b) => b.value);
        const listed = phones.value.split(/[\s,]+/).filter(Boolean);
        const body = { scopes: company && ticked.length < SCOPES.length ? ticked : null,
                       phoneIndexes: company && listed.length ? listed.map(Number) : null,
                       expiresAt: expires.value ? expires.value + "T00:00:00Z" : null };
        try {
          await BG.post("/dashboard/api/keys/" + k.id + "/limits", body);
          BG.toast("key #" + k.id + " limits saved", "ok");
          await BG.load();
        } catch (e) { error.textContent = e.message; error.hidden = false; }
      } },
        company ? el("fieldset", { class: "scopes" }, el("legend", {}, "Scopes"),
          boxes.map((box, i) => el("label", {}, box, " " + SCOPES[i]))) : null,
        company ? el("label", { for: id + "-phones" }, "Phones (empty: every phone)", phones) : null,
        el("label", { for: id + "-expires" }, "Expires on (UTC; empty: never)", expires),
        el("button", { type: "submit", class: "save-limits" }, "Save limits"), error));
  }

  function keyRow(k) {
    return el("tr", { dataset: { keyId: String(k.id), state: k.state } },
      el("th", { scope: "row" }, el("div", {}, el("span", { class: "mono" }, k.prefix + "…"), el("div", { class: "small muted" }, "#" + k.id + (k.name ? " " + k.name : "")))),
      el("td", {}, k.companyId || "operator"),
      el("td", { class: "small", dataset: { field: "limits" } }, el("div", {}, limitsText(k), k.state === "revoked" ? null : limitsForm(k))),
      el("td", {}, el("div", {}, badge(k.state === "active" ? "ready" : "disabled", k.state))),
      el("td", {}, k.lastUsedAt ? fmt.ago(k.lastUsedAt) : "never"),
      el("td", { class: "actions" }, k.state === "revoked" ? null
        : el("button", { class: "danger", dataset: { action: "revoke" }, onclick: () => BG.act("/dashboard/api/keys/" + k.id + "/revoke", {
            confirmText: "Revoke key " + k.prefix + "… (" + (k.companyId || "operator") + ")? It stops working at once.",
            okLabel: "Revoke", done: () => "key #" + k.id + " revoked" }) }, "Revoke")));
  }

  function fillKeyCompanies(companies) {
    if (keyCompany.options.length) return;
    companies.forEach((c) => keyCompany.append(el("option", { value: c.id }, c.name + " (" + c.id + ")")));
    if (operator) keyCompany.append(el("option", { value: "" }, "operator key (every company)"));
  }

  BG.load = async function () {
    const [companies, keys] = await Promise.all([BG.api("/dashboard/api/companies"), BG.api("/dashboard/api/keys")]);
    document.querySelector("#companies tbody").replaceChildren(...(companies.companies.length ? companies.companies.map(companyRow)
      : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No companies yet."))]));
    document.querySelector("#keys tbody").replaceChildren(...(keys.keys.length ? keys.keys.map(keyRow)
      : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No keys yet."))]));
    fillKeyCompanies(companies.companies);
  };

  companyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await BG.post("/dashboard/api/companies", { companyId: document.getElementById("new-company-id").value.trim(),
                                                                   name: document.getElementById("new-company-name").value.trim() });
      formError("company-error", null);
      companyForm.reset();
      keyCompany.replaceChildren();
      BG.toast("company " + created.id + " created", "ok");
      await BG.load();
    } catch (error) { formError("company-error", error); }
  });

  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const scopes = [...document.querySelectorAll("#new-key-scopes input:checked")].map((i) => i.value);
    const phones = document.getElementById("new-key-phones").value.split(/[\s,]+/).filter(Boolean);
    const days = document.getElementById("new-key-days").value;
    const body = { companyId: keyCompany.value || null, name: document.getElementById("new-key-name").value.trim(),
                   scopes: scopes.length ? scopes : null, phoneIndexes: phones.length ? phones.map(Number) : null,
                   expiresAt: days ? new Date(Date.now() + Number(days) * 86400000).toISOString() : null };
    try {
      const created = await BG.post("/dashboard/api/keys", body);
      formError("key-error", null);
      document.getElementById("new-key-value").value = created.key;
      document.getElementById("new-key-shown").hidden = false;
      await BG.load();
      document.getElementById("new-key-value").select();
    } catch (error) { formError("key-error", error); }
  });
})();
