/* Messages: a live list filtered by status, direction, engine, phone and time, paged; found by id,
   provider id, chat or part of a text; a message's timeline, error and webhook deliveries. */
"use strict";

(function () {
  const { el, badge, fmt, params } = BG;
  const form = document.getElementById("search");
  const companyFilter = BG.companyFilter("msg-company", "msg-company-label");
  const companySelect = companyFilter.select;
  const input = BG.preset(document.getElementById("q"), "q");

  async function companies() {
    if (!companyFilter.unfilled()) return;
    const data = await BG.api("/dashboard/api/phones");
    companyFilter.fill(data.companies);
    BG.preset(companySelect, "company");
  }

  const filterControls = ["status", "direction", "engine", "phone", "since", "until"].map((name) =>
    BG.preset(document.getElementById("f-" + name), name));
  let next = null;  // the cursor of the next (older) page

  function query(before) {
    const q = new URLSearchParams();
    if (companySelect.value) q.set("company", companySelect.value);
    if (input.value.trim()) q.set("q", input.value.trim());
    filterControls.forEach((control) => {
      const value = control.value.trim();
      if (!value) return;
      // datetime-local is the browser's local time: send it as an instant.
      q.set(control.name, control.type === "datetime-local" ? new Date(value).toISOString() : value);
    });
    if (before) q.set("before", String(before));
    return q;
  }

  /* The provider error code a timeline step's detail carries, whichever shape it has. */
  function timelineCode(d) {
    if (!d || typeof d !== "object") return null;
    const first = Array.isArray(d.errors) && d.errors.length ? d.errors[0] : null;
    return d.code || d.errorCode || (d.error && d.error.code) || (first && first.code) || null;
  }

  function row(m) {
    return el("tr", {
        class: "clickable", tabindex: 0, dataset: { messageId: m.messageId, companyId: m.companyId },
        onclick: () => show(m.companyId, m.messageId),
        onkeydown: (e) => { if (e.key === "Enter") show(m.companyId, m.messageId); } },
      el("td", { class: "small" }, fmt.time(m.createdAt)), el("td", {}, m.companyId + " / " + m.phoneIndex),
      el("td", { class: "mono small" }, m.chatId), el("td", {}, m.direction === "inbound" ? "in" : "out"),
      el("td", {}, m.type), el("td", {}, badge(m.status, m.status), m.errorCode ? el("span", { class: "small error" }, " " + m.errorCode) : null, m.errorCode ? BG.codeName(m.errorCode) : null),
      el("td", { class: "small preview" }, m.content || ""));
  }

  const TITLES = { id: "the id", chat: "the chat", text: "the text" };
  let asked = 0;  // answers to an older request (the 5 s re-read, a previous search) are dropped
  async function search(more) {
    const mine = ++asked;
    const q = query(more ? next : null);
    const data = await BG.api("/dashboard/api/messages?" + q);
    if (mine !== asked) return;
    const tbody = document.querySelector("#results tbody");
    const rows = data.data.map(row);
    if (more) tbody.append(...rows);
    else {
      document.getElementById("results-title").textContent = q.has("q")
        ? data.data.length + (data.next ? "+" : "") + " message(s) matching " + TITLES[data.matchedBy] : "Latest messages";
      tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No messages found."))]));
    }
    next = data.next;
    document.getElementById("more").hidden = !next;
    document.getElementById("results").dataset.shown = q.toString();  // what the list shows now
  }

  /* The first page is live: new messages appear at the top while it is shown (not while paging). */
  setInterval(() => {
    if (document.hidden) return;
    const tbody = document.querySelector("#results tbody");
    if (tbody.children.length > 50) return;  // the operator paged on: leave the list alone
    search(false).catch(() => {});
  }, 5000);

  async function show(companyId, messageId) {
    const m = await BG.api("/dashboard/api/messages/" + encodeURIComponent(companyId) + "/" + encodeURIComponent(messageId));
    const detail = document.getElementById("detail");
    detail.hidden = false;
    detail.dataset.messageId = m.messageId;
    detail.dataset.status = m.status;
    document.getElementById("detail-id").textContent = m.messageId;
    const fields = [["Status", badge(m.status, m.status)], ["Company", m.companyId + " · phone " + m.phoneIndex],
      ["Chat", m.chatId], ["Direction", m.direction], ["Type", m.type], ["Provider", m.provider],
      ["Provider id", m.externalId || "–"], ["Attempts", m.attempts], ["Created", fmt.time(m.createdAt)],
      ["Sent", fmt.time(m.sentAt)], ["Delivered", fmt.time(m.deliveredAt)], ["Read", fmt.time(m.readAt)]];
    if (m.content) fields.push(["Text", m.content]);
    if (m.error) fields.push(["Error", el("span", {}, el("span", { class: "error" }, (m.error.code || "") + " " + (m.error.title || "")),
      BG.codeName(m.error.code))]);
    document.getElementById("detail-fields").replaceChildren(...fields.map(([label, value]) =>
      el("div", { class: "field" }, el("dt", {}, label), el("dd", {}, value))));
    document.getElementById("timeline").replaceChildren(...m.history.map((h) => {
      const previous = h.detail && h.detail.previousError;
      return el("li", { dataset: { to: h.toStatus, source: h.source } },
        el("span", { class: "small muted" }, fmt.time(h.at) + " "),
        h.fromStatus ? badge(h.fromStatus, h.fromStatus) : null, h.fromStatus ? " → " : null, badge(h.toStatus, h.toStatus),
        el("span", { class: "small" }, " by " + h.source),
        previous ? el("div", { class: "small error" }, "previous error: " + (previous.code || "") + " " + (previous.title || ""),
          BG.codeName(previous.code)) : null,
        h.detail && !previous ? BG.codeName(timelineCode(h.detail)) : null,
        h.detail && Object.keys(h.detail).length && !previous ? el("div", { class: "small mono muted" }, fmt.json(h.detail).slice(0, 300)) : null);
    }));
    const tbody = document.querySelector("#deliveries tbody");
    tbody.replaceChildren(...(m.deliveries.length ? m.deliveries.map((d) => el("tr", { dataset: { delivery: d.id, status: d.status } },
        el("td", {}, d.eventType + (d.eventStatus ? " (" + d.eventStatus + ")" : "")), el("td", { class: "small mono" }, d.url),
        el("td", {}, badge(d.status, d.status)), el("td", {}, d.attempts),
        el("td", { class: "small" }, d.lastStatusCode ? "HTTP " + d.lastStatusCode : (d.lastError || "–"))))
      : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No webhook deliveries (no endpoint subscribed to these events)."))]));
    const url = new URL(location.href);
    url.searchParams.set("company", companyId);
    url.searchParams.set("id", messageId);
    history.replaceState(null, "", url);
    if (window.innerWidth < 900) detail.scrollIntoView({ behavior: "smooth" });
  }

  BG.load = async function () {
    await companies();
    await search();
    if (params.get("id") && params.get("company")) await show(params.get("company"), params.get("id"));
    else if (params.get("id") && BG.company) await show(BG.company, params.get("id"));
  };

  form.addEventListener("submit", (event) => { event.preventDefault(); search(false).catch((e) => BG.toast(e.message, "error")); });
  companySelect.addEventListener("change", () => search(false).catch((e) => BG.toast(e.message, "error")));
  filterControls.forEach((control) => control.addEventListener("change", () => search(false).catch((e) => BG.toast(e.message, "error"))));
  document.getElementById("more").addEventListener("click", () => search(true).catch((e) => BG.toast(e.message, "error")));
})();
