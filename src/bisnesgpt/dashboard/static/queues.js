/* Queues: counts and rates (live), queue actions (confirmed), and a job browser: every state
   paginated, a job's data / options / attempts / stack trace / log, retry / promote / remove,
   failed jobs filtered by company, phone and error code and retried in bulk. */
"use strict";

(function () {
  const { el, badge, fmt } = BG;
  const select = document.getElementById("failed-queue");
  let lastFailed = {};

  function actionButton(label, path, confirmText, done, cls) {
    return el("button", { class: cls || "", dataset: { action: label.toLowerCase().replace(/ /g, "-") },
                          onclick: () => BG.act(path, { confirmText, okLabel: label, done }) }, label);
  }

  /* Completed jobs are removed as they finish, so the column counts the last hour's from the
     queue's event stream; "kept" completed jobs (added by a producer that keeps them) can be cleaned. */
  function completedTitle(q) {
    return "completed since " + fmt.time(q.lastHour.sinceMs) + (q.counts.completed ? "; " + q.counts.completed + " kept in Redis" : "; none kept (removed as they complete)");
  }

  function cleanButton(q, base) {
    const button = actionButton("Clean completed", base + "/clean-completed", "Remove the completed jobs of " + q.name + "?",
      (r) => "removed " + r.removed + " completed job(s)");
    if (!q.counts.completed) {
      button.disabled = true;
      button.title = "no completed jobs are kept in Redis: they are removed as they complete";
    }
    return button;
  }

  function renderQueues(queues) {
    const tbody = document.querySelector("#queues tbody");
    const rows = queues.map((q) => {
      const base = "/dashboard/api/queues/" + encodeURIComponent(q.name);
      const c = q.counts;
      return el("tr", { dataset: { queue: q.name, paused: String(q.paused) } },
        el("th", { scope: "row" }, q.name, q.paused ? el("span", {}, " ", badge("degraded", "paused")) : null,
          el("div", { class: "small muted" }, "consumer: " + q.consumer)),
        el("td", { dataset: { count: "waiting" } }, c.waiting + (q.paused ? c.paused : 0)),
        el("td", { dataset: { count: "active" } }, c.active),
        el("td", { dataset: { count: "delayed" } }, c.delayed),
        el("td", { dataset: { count: "prioritized" } }, c.prioritized),
        el("td", { dataset: { count: "completed" }, title: completedTitle(q) },
          (q.lastHour.trimmed ? "≥ " : "") + q.lastHour.completed, c.completed ? el("div", { class: "small muted" }, c.completed + " kept") : null),
        el("td", { dataset: { count: "failed" }, class: c.failed ? "error" : "" }, c.failed),
        el("td", {}, "✓ " + q.ratePerMinute.completed + " / ✗ " + q.ratePerMinute.failed),
        el("td", { class: "actions" },
          q.paused
            ? actionButton("Resume", base + "/resume", "Resume " + q.name + "?", () => q.name + " resumed")
            : actionButton("Pause", base + "/pause", "Pause " + q.name + "? Workers stop taking new jobs.", () => q.name + " paused"),
          actionButton("Retry all failed", base + "/retry-failed",
            "Retry every failed job of " + q.name + "?" + (q.sendQueue ? " Failed messages are re-queued (recorded as an operator action)." : ""),
            (r) => "retried " + r.done + (r.skippedCount ? ", skipped " + r.skippedCount : "")),
          cleanButton(q, base)));
    });
    tbody.replaceChildren(...rows);
    const counts = Object.fromEntries(queues.map((q) => [q.name, q.counts]));
    stateButtons.forEach((b) => {
      const current = counts[select.value || (queues.find((q) => q.counts.failed > 0) || queues[0]).name] || {};
      b.querySelector("span").textContent = String(current[b.dataset.state] ?? 0);
    });
    if (!select.options.length) {
      queues.forEach((q) => select.append(el("option", { value: q.name }, q.name)));
      const withFailures = queues.find((q) => q.counts.failed > 0);
      select.value = withFailures ? withFailures.name : queues[0].name;
    }
    const changed = queues.some((q) => lastFailed[q.name] !== undefined && lastFailed[q.name] !== q.counts.failed);
    lastFailed = Object.fromEntries(queues.map((q) => [q.name, q.counts.failed]));
    return changed;
  }

  /* The job's error, and the message's stored error only when it says something else (the send
     worker fails a job with the message's own "code: title", which would read twice). */
  function errorCell(job, m) {
    const reason = (job.failedReason || "").trim();
    const stored = m && m.errorCode ? m.errorCode + (m.errorTitle ? ": " + m.errorTitle : "") : "";
    const lines = [reason, BG.codeName((m && m.errorCode) || BG.leadingCode(reason))];
    if (stored && !reason.includes(stored)) lines.push(el("div", { class: "muted" }, stored));
    return lines;
  }

  /* --- the job browser: one state of one queue, paginated; failed jobs filtered ------------ */
  const PAGE = 20;
  const stateButtons = document.querySelectorAll("#job-states [data-state]");
  const filters = { company: document.getElementById("f-company"), phone: document.getElementById("f-phone"),
                    code: document.getElementById("f-code") };
  let state = "failed";
  let start = 0;

  function filterQuery() {
    const query = new URLSearchParams();
    if (state !== "failed") return query;
    if (filters.company.value.trim()) query.set("company", filters.company.value.trim());
    if (filters.phone.value.trim()) query.set("phone", filters.phone.value.trim());
    if (filters.code.value.trim()) query.set("code", filters.code.value.trim());
    return query;
  }

  function details(job) {
    const block = (title, value) => el("div", {}, el("h4", {}, title), el("pre", { class: "small mono" }, value));
    return el("details", { class: "job-details" }, el("summary", {}, "details"),
      block("Data", JSON.stringify(job.data, null, 2)), block("Options", JSON.stringify(job.opts, null, 2)),
      el("p", { class: "small" }, "attempts " + job.attemptsMade + " / " + job.attempts + " · added " + fmt.time(job.timestamp)
        + (job.processedOn ? " · processed " + fmt.time(job.processedOn) : "")
        + (job.finishedOn ? " · finished " + fmt.time(job.finishedOn) : "")
        + (job.delayUntil ? " · delayed until " + fmt.time(job.delayUntil) : "")),
      job.stacktrace.length ? block("Stack trace", job.stacktrace.join("\n")) : null,
      job.log.length ? block("Log", job.log.join("\n")) : null);
  }

  function jobActions(job, base, m) {
    const id = encodeURIComponent(job.id);
    const buttons = [];
    if (job.state === "failed") {
      buttons.push(el("button", { dataset: { action: "retry" }, onclick: () => BG.act(base + id + "/retry", {
        confirmText: "Retry job " + job.id + "?" + (m ? " Its message goes back to queued (recorded as an operator action)." : ""),
        okLabel: "Retry", done: (r) => "job " + r.jobId + " retried" + (r.messageRequeued ? "; message re-queued" : "") }) }, "Retry"));
    }
    if (job.state === "delayed") {
      buttons.push(el("button", { dataset: { action: "promote" }, onclick: () => BG.act(base + id + "/promote", {
        confirmText: "Move job " + job.id + " to waiting now?", okLabel: "Promote", done: (r) => "job " + r.jobId + " promoted" }) }, "Promote"));
    }
    if (job.state !== "active") {
      buttons.push(el("button", { class: "danger", dataset: { action: "remove" }, onclick: () => BG.act(base + id + "/remove", {
        confirmText: "Remove job " + job.id + "? Its message stays as it is.", okLabel: "Remove",
        done: (r) => "job " + r.jobId + " removed" }) }, "Remove"));
    }
    return buttons;
  }

  async function loadFailed() {
    const queue = select.value;
    if (!queue) return;
    document.getElementById("job-filters").hidden = state !== "failed";
    stateButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.state === state)));
    const query = filterQuery();
    query.set("state", state);
    query.set("start", String(start));
    query.set("limit", String(PAGE));
    const data = await BG.api("/dashboard/api/queues/" + encodeURIComponent(queue) + "/jobs?" + query);
    const table = document.getElementById("failed");
    table.dataset.state = state;
    const tbody = table.querySelector("tbody");
    document.getElementById("job-page").textContent = data.total
      ? (start + 1) + "-" + (start + data.jobs.length) + " of " + data.total : "";
    document.getElementById("job-prev").disabled = start === 0;
    document.getElementById("job-next").disabled = start + data.jobs.length >= data.total;
    document.getElementById("retry-these").disabled = state !== "failed" || !data.total;
    if (!data.jobs.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No " + state + " jobs in " + queue
        + (query.has("company") || query.has("phone") || query.has("code") ? " matching the filters." : "."))));
      return;
    }
    const base = "/dashboard/api/queues/" + encodeURIComponent(queue) + "/jobs/";
    tbody.replaceChildren(...data.jobs.map((job) => {
      const m = job.message;
      const messageCell = m
        ? el("td", {}, el("a", { href: "/dashboard/messages?company=" + encodeURIComponent(m.companyId) + "&id=" + encodeURIComponent(m.messageId) },
            m.messageId), el("div", { class: "small" }, m.companyId + " · phone " + m.phoneIndex + " · ", badge(m.status, m.status)))
        : el("td", { class: "small mono" }, fmt.json(job.data));
      return el("tr", { dataset: { job: job.id, state: job.state } },
        el("td", { class: "mono small" }, job.id, details(job)),
        messageCell,
        el("td", { class: "small", dataset: { field: "error" } }, errorCell(job, m)),
        el("td", {}, job.attemptsMade + " / " + job.attempts),
        el("td", { class: "small" }, fmt.time(job.finishedOn || job.processedOn || job.timestamp)),
        el("td", { class: "actions" }, jobActions(job, base, m)));
    }));
  }

  stateButtons.forEach((button) => button.addEventListener("click", () => {
    state = button.dataset.state;
    start = 0;
    loadFailed().catch((e) => BG.toast(e.message, "error"));
  }));
  document.getElementById("job-prev").addEventListener("click", () => { start = Math.max(0, start - PAGE); loadFailed().catch((e) => BG.toast(e.message, "error")); });
  document.getElementById("job-next").addEventListener("click", () => { start += PAGE; loadFailed().catch((e) => BG.toast(e.message, "error")); });
  document.getElementById("job-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    start = 0;
    loadFailed().catch((e) => BG.toast(e.message, "error"));
  });
  document.getElementById("retry-these").addEventListener("click", () => {
    const body = {};
    if (filters.company.value.trim()) body.companyId = filters.company.value.trim();
    if (filters.phone.value.trim()) body.phoneIndex = Number(filters.phone.value.trim());
    if (filters.code.value.trim()) body.errorCode = filters.code.value.trim();
    const which = Object.keys(body).length ? " matching the filters" : "";
    BG.act("/dashboard/api/queues/" + encodeURIComponent(select.value) + "/retry-failed", {
      confirmText: "Retry every failed job of " + select.value + which + "?", okLabel: "Retry", payload: body,
      done: (r) => "retried " + r.done + (r.skippedCount ? ", skipped " + r.skippedCount : "") });
  });

  /* --- messages failed by provider webhook (accepted, then a failed status): filtered, paged - */
  const pfFilters = { company: document.getElementById("pf-company"), phone: document.getElementById("pf-phone"),
                      code: document.getElementById("pf-code") };
  let pfStart = 0;

  async function loadProviderFailed() {
    const query = new URLSearchParams({ start: String(pfStart), limit: String(PAGE) });
    for (const [name, input] of Object.entries(pfFilters)) if (input.value.trim()) query.set(name, input.value.trim());
    const data = await BG.api("/dashboard/api/provider-failures?" + query);
    const tbody = document.querySelector("#provider-failed tbody");
    document.getElementById("pf-page").textContent = data.total
      ? (pfStart + 1) + "-" + (pfStart + data.messages.length) + " of " + data.total : "";
    document.getElementById("pf-prev").disabled = pfStart === 0;
    document.getElementById("pf-next").disabled = pfStart + data.messages.length >= data.total;
    if (!data.messages.length) {
      const filtered = Object.values(pfFilters).some((input) => input.value.trim());
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No message failed by provider webhook in the last "
        + data.windowDays + " days" + (filtered ? " matching the filters." : "."))));
      return;
    }
    tbody.replaceChildren(...data.messages.map((m) => el("tr", { dataset: { message: m.messageId, code: m.errorCode || "" } },
      el("td", {}, el("a", { href: "/dashboard/messages?company=" + encodeURIComponent(m.companyId) + "&id=" + encodeURIComponent(m.messageId) },
        m.messageId), el("div", { class: "small" }, m.companyId + " · phone " + m.phoneIndex + " · " + m.provider)),
      el("td", { class: "small", dataset: { field: "error" } }, (m.errorCode || "no code") + (m.errorTitle ? ": " + m.errorTitle : ""),
        BG.codeName(m.errorCode)),
      el("td", { class: "small" }, m.sentAt ? fmt.time(Date.parse(m.sentAt)) : "-"),
      el("td", { class: "small" }, fmt.time(Date.parse(m.failedAt))))));
  }

  document.getElementById("pf-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    pfStart = 0;
    loadProviderFailed().catch((e) => BG.toast(e.message, "error"));
  });
  document.getElementById("pf-prev").addEventListener("click", () => { pfStart = Math.max(0, pfStart - PAGE); loadProviderFailed().catch((e) => BG.toast(e.message, "error")); });
  document.getElementById("pf-next").addEventListener("click", () => { pfStart += PAGE; loadProviderFailed().catch((e) => BG.toast(e.message, "error")); });

  /* --- provider webhooks kept aside (no phone, or several, matched): what to do about each -- */
  async function loadKeptAside() {
    const data = await BG.api("/dashboard/api/provider-webhooks/unrouted?limit=50");
    const tbody = document.querySelector("#kept-aside tbody");
    if (!data.changes.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No provider webhook is kept aside.")));
      return;
    }
    tbody.replaceChildren(...data.changes.map((c) => el("tr", { dataset: { change: String(c.id), routing: c.routing } },
      el("td", { class: "small" }, fmt.time(Date.parse(c.receivedAt))),
      el("td", { class: "small" }, c.provider + " · " + c.field,
        el("div", { class: "mono" }, "phone_number_id " + (c.phoneNumberId || "-") + (c.wabaId ? " · WABA " + c.wabaId : "")),
        el("details", { class: "job-details" }, el("summary", {}, "value"), el("pre", { class: "small mono" }, c.valuePreview))),
      el("td", {}, badge(c.routing === "ambiguous" ? "degraded" : "error", c.routing),
        c.candidates.length ? el("div", { class: "small", dataset: { field: "candidates" } },
          c.candidates.map((p) => p.companyId + "/" + p.phoneIndex).join(", ")) : null),
      el("td", { class: "small", dataset: { field: "what-to-do" } }, c.whatToDo))));
  }

  BG.load = async function () {
    const data = await BG.api("/dashboard/api/queues");
    renderQueues(data.queues);
    await Promise.all([loadFailed(), loadProviderFailed(), loadKeptAside()]);
  };

  BG.on("queues", (data) => {
    if (!data || data.error || !data.queues) return;
    if (renderQueues(data.queues)) loadFailed().catch(() => {});
  });
  select.addEventListener("change", () => { start = 0; loadFailed().catch((e) => BG.toast(e.message, "error")); });
})();
