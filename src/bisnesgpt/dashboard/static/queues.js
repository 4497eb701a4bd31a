/* Queues: counts and rates (live), failed jobs with retry / remove, queue actions (confirmed). */
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
    const lines = [reason];
    if (stored && !reason.includes(stored)) lines.push(el("div", { class: "muted" }, stored));
    return lines;
  }

  async function loadFailed() {
    const queue = select.value;
    if (!queue) return;
    const data = await BG.api("/dashboard/api/queues/" + encodeURIComponent(queue) + "/failed?limit=50");
    const tbody = document.querySelector("#failed tbody");
    if (!data.jobs.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No failed jobs in " + queue + ".")));
      return;
    }
    const base = "/dashboard/api/queues/" + encodeURIComponent(queue) + "/jobs/";
    tbody.replaceChildren(...data.jobs.map((job) => {
      const m = job.message;
      const messageCell = m
        ? el("td", {}, el("a", { href: "/dashboard/messages?company=" + encodeURIComponent(m.companyId) + "&id=" + encodeURIComponent(m.messageId) },
            m.messageId), el("div", { class: "small" }, m.companyId + " · phone " + m.phoneIndex + " · ", badge(m.status, m.status)))
        : el("td", { class: "small mono" }, fmt.json(job.data));
      return el("tr", { dataset: { job: job.id } },
        el("td", { class: "mono small" }, job.id),
        messageCell,
        el("td", { class: "small", dataset: { field: "error" } }, errorCell(job, m)),
        el("td", {}, job.attemptsMade + " / " + job.attempts),
        el("td", { class: "small" }, fmt.time(job.finishedOn || job.timestamp)),
        el("td", { class: "actions" },
          el("button", { dataset: { action: "retry" }, onclick: () => BG.act(base + encodeURIComponent(job.id) + "/retry", {
            confirmText: "Retry job " + job.id + "?" + (m ? " Its message goes back to queued (recorded as an operator action)." : ""),
            okLabel: "Retry", done: (r) => "job " + r.jobId + " retried" + (r.messageRequeued ? "; message re-queued" : "") }) }, "Retry"),
          el("button", { class: "danger", dataset: { action: "remove" }, onclick: () => BG.act(base + encodeURIComponent(job.id) + "/remove", {
            confirmText: "Remove job " + job.id + "? Its message stays as it is.", okLabel: "Remove",
            done: (r) => "job " + r.jobId + " removed" }) }, "Remove")));
    }));
  }

  BG.load = async function () {
    const data = await BG.api("/dashboard/api/queues");
    renderQueues(data.queues);
    await loadFailed();
  };

  BG.on("queues", (data) => {
    if (!data || data.error || !data.queues) return;
    if (renderQueues(data.queues)) loadFailed().catch(() => {});
  });
  select.addEventListener("change", () => loadFailed().catch((e) => BG.toast(e.message, "error")));
})();
