/* Processes: a card per role instance, charts from process_metrics, recent warnings/errors. */
"use strict";

(function () {
  const { el, badge, fmt } = BG;
  const cards = document.getElementById("process-cards");
  const chartsBox = document.getElementById("charts");
  let range = "hour";
  let plots = [];
  let lastOverview = null;
  const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#65a30d"];
  // process:status values the orchestrator publishes while a process is not serving
  const NOT_SERVING = { restarting: "down", starting: "down", given_up: "down", stopping: "draining", stopped: "down",
                        crashed: "down", draining: "draining" };

  function field(label, value, key) {
    return el("div", { class: "field" }, el("dt", {}, label), el("dd", { dataset: { field: key } }, value));
  }

  function card(p) {
    const failing = Object.entries(p.failing || {}).map(([name, detail]) => name + ": " + detail).join("; ");
    const depth = Object.entries(p.queueDepth || {}).map(([queue, n]) => queue + " " + n).join(", ");
    return el("article", { class: "card process", dataset: { process: p.processName, role: p.role, status: p.status } },
      el("header", {},
        el("h3", {}, p.processName),
        badge(p.status, p.status)),
      el("p", { class: "note", dataset: { field: "note" } }, p.expected ? "" : "not expected in this deployment"),
      el("dl", { class: "fields" },
        field("PID", p.pid ?? "–", "pid"),
        field("Uptime", fmt.duration(p.uptimeSeconds), "uptime"),
        field("Restarts", p.restarts ?? 0, "restarts"),
        field("RSS", (p.memoryMb ?? 0) + " MB", "rss"),
        field("CPU", (p.cpuPercent ?? 0) + " %", "cpu"),
        field("Heartbeat", p.lastHeartbeat ? fmt.duration(p.secondsSinceHeartbeat) + " ago" : "never", "heartbeat"),
        field("Active bots", p.activeBots ?? 0, "bots"),
        field("Host", p.host || "–", "host")),
      depth ? el("p", { class: "small muted" }, "queues: " + depth) : null,
      failing ? el("p", { class: "small error" }, failing) : null,
      p.lastError && p.status !== "healthy" ? el("p", { class: "small error" }, p.lastError) : null);
  }

  function renderOverview(overview) {
    if (!overview || overview.error) {
      if (overview && overview.error) BG.toast("process health: " + overview.error, "error");
      return;
    }
    lastOverview = overview;
    const overall = document.getElementById("overall");
    overall.dataset.status = overview.status;
    overall.textContent = overview.status;
    const roles = document.getElementById("roles");
    roles.replaceChildren(...Object.entries(overview.roles).map(([name, role]) =>
      el("span", { class: "role", dataset: { role: name, status: role.status } },
        name + " ", badge(role.status, role.status),
        role.enabled ? " " + role.healthyInstances + "/" + role.expectedInstances : "")));
    cards.querySelectorAll(".loading").forEach((node) => node.remove());
    const seen = new Set();
    for (const process of overview.processes) {
      seen.add(process.processName);
      const fresh = card(process);
      const old = cards.querySelector(`[data-process="${CSS.escape(process.processName)}"]`);
      if (old) old.replaceWith(fresh); else cards.append(fresh);
    }
    cards.querySelectorAll("[data-process]").forEach((node) => { if (!seen.has(node.dataset.process)) node.remove(); });
  }

  function patchProcess(event) {
    const node = cards.querySelector(`[data-process="${CSS.escape(event.processName || "")}"]`);
    if (!node) return;
    const set = (key, value) => { const f = node.querySelector(`[data-field="${key}"]`); if (f) f.textContent = value; };
    if (event.kind === "heartbeat") {
      if (event.pid) set("pid", event.pid);
      if (event.rssMb !== undefined) set("rss", Math.round(event.rssMb) + " MB");
      if (event.cpu !== undefined) set("cpu", event.cpu + " %");
      if (event.uptime !== undefined) set("uptime", fmt.duration(event.uptime));
      set("heartbeat", "just now");
      return;
    }
    const status = NOT_SERVING[event.status];
    if (status) {
      node.dataset.status = status;
      const b = node.querySelector(".badge");
      b.dataset.status = status;
      b.textContent = event.status.replace("_", " ");
      set("note", event.status === "restarting"
        ? "restarting" + (event.delayMs ? " in " + event.delayMs + " ms" : "") : event.status.replace("_", " "));
    }
  }

  function renderEvents(events, table = "#events", empty = "No warnings or errors recorded.") {
    const tbody = document.querySelector(table + " tbody");
    if (!events.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, empty)));
      return;
    }
    tbody.replaceChildren(...events.map((e) => el("tr", { dataset: { severity: e.severity } },
      el("td", {}, fmt.time(e.at)), el("td", {}, e.processName), el("td", {}, badge(e.severity, e.severity)),
      el("td", {}, e.type), el("td", { class: "small mono" }, fmt.json(e.data).slice(0, 300)))));
  }

  /* Latency shows in ms, s or min as its largest value needs ("240000" ms reads as "4 min"). */
  function displayUnit(chart) {
    const trim = (v) => String(Number(v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)));
    if (chart.unit !== "ms") return { name: chart.unit, label: (v) => trim(v) };
    const max = Math.max(0, ...chart.series.flatMap((s) => s.values.filter((v) => v !== null)));
    if (max >= 120000) return { name: "min", label: (v) => trim(v / 60000) + " min" };
    if (max >= 2000) return { name: "s", label: (v) => trim(v / 1000) + " s" };
    return { name: "ms", label: (v) => trim(v) + " ms" };
  }

  /* A chart for screen readers and for reading exact values: a one-line summary (the canvas's
     label) and a table of the latest buckets, collapsed under the chart. */
  const TABLE_ROWS = 10;
  function textAlternative(box, chart, xs, unit) {
    const parts = chart.series.map((s) => {
      const values = s.values.filter((v) => v !== null);
      const latest = [...s.values].reverse().find((v) => v !== null);
      return s.label + ": latest " + (latest === undefined ? "–" : unit.label(latest))
        + ", highest " + (values.length ? unit.label(Math.max(...values)) : "–");
    });
    const summary = chart.title + ". " + parts.join("; ") + ".";
    box.querySelectorAll("canvas").forEach((c) => { c.setAttribute("role", "img"); c.setAttribute("aria-label", summary); });
    const rows = [];
    for (let i = xs.length - 1; i >= 0 && rows.length < TABLE_ROWS; i--) {
      if (chart.series.every((s) => s.values[i] === null)) continue;
      rows.push(el("tr", {}, el("th", { scope: "row" }, fmt.time(xs[i] * 1000)),
        chart.series.map((s) => el("td", {}, s.values[i] === null ? "–" : unit.label(s.values[i])))));
    }
    box.append(el("p", { class: "visually-hidden", dataset: { summary: "1" } }, summary),
      el("details", {}, el("summary", {}, "Data table"),
        el("table", {}, el("caption", { class: "visually-hidden" }, chart.title + ", latest buckets first"),
          el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Time"), chart.series.map((s) => el("th", { scope: "col" }, s.label)))),
          el("tbody", {}, rows))));
  }

  const measure = document.createElement("canvas").getContext("2d");
  function axisSize(u, values, axisIdx, cycleNum) {
    if (!values || !values.length) return 50;
    measure.font = u.axes[axisIdx].font[0] || "12px system-ui";
    // uPlot scales its font by the device pixel ratio; the axis size is in CSS pixels.
    const widest = Math.max(...values.map((v) => measure.measureText(String(v)).width)) / (window.devicePixelRatio || 1);
    return Math.ceil(widest) + 20;  // tick length and gap
  }

  async function loadCharts() {
    const data = await BG.api("/dashboard/api/charts?range=" + range);
    plots.forEach((plot) => plot.destroy());
    plots = [];
    chartsBox.replaceChildren();
    for (const [key, chart] of Object.entries(data.charts)) {
      const unit = displayUnit(chart);
      const box = el("figure", { class: "chart", dataset: { chart: key, unit: unit.name } },
        el("figcaption", {}, chart.title + " (" + unit.name + ")"));
      chartsBox.append(box);
      if (!chart.series.length) { box.append(el("p", { class: "muted small" }, "No data in this range yet.")); continue; }
      if (!window.uPlot) continue;
      const width = Math.max(260, box.clientWidth - 16);
      const opts = {
        width, height: 180,
        series: [{}].concat(chart.series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5,
                                                          spanGaps: false, points: { show: true, size: 5 },
                                                          value: (u, v) => (v === null || v === undefined ? "–" : unit.label(v)) }))),
        // Tick labels in the chart's display unit, and an axis as wide as its longest label (never clipped).
        axes: [{}, { values: (u, splits) => splits.map(unit.label), size: axisSize }],
        legend: { live: false },
        scales: { x: { time: true } },
      };
      const plot = new uPlot(opts, [data.x].concat(chart.series.map((s) => s.values)), box);
      plots.push(plot);
      box.plot = plot;
      textAlternative(box, chart, data.x, unit);
    }
  }

  BG.load = async function () {
    const data = await BG.api("/dashboard/api/processes");
    renderOverview(data.overview);
    renderEvents(data.events);
    renderAudit(data.audit);
  };

  function renderAudit(events) { renderEvents(events, "#audit", "No operator actions recorded."); }

  let eventsTimer = null;
  function reloadEventsSoon() {
    clearTimeout(eventsTimer);
    eventsTimer = setTimeout(() => BG.api("/dashboard/api/events?limit=30&kind=alerts").then((d) => renderEvents(d.events)).catch(() => {}), 1000);
  }

  /* The page's api process stopped answering (killed, host gone): its card cannot stay "healthy"
     with a pid that no longer serves; the next good read shows what replaced it. */
  BG.on("unreachable", () => {
    const overall = document.getElementById("overall");
    overall.dataset.status = "unknown";
    overall.textContent = "unknown (no answer)";
    const name = BG.servedBy || (lastOverview && lastOverview.servedBy);
    const node = name && cards.querySelector(`[data-process="${CSS.escape(name)}"]`);
    if (!node) return;
    node.dataset.status = "unreachable";
    const b = node.querySelector(".badge");
    b.dataset.status = "unreachable";
    b.textContent = "unreachable";
    const note = node.querySelector('[data-field="note"]');
    if (note) note.textContent = "no answer from this process (this page's connection was lost)";
  });

  BG.on("overview", renderOverview);
  BG.on("process", (event) => { patchProcess(event); if (event.kind === "status") reloadEventsSoon(); });

  document.querySelectorAll("[data-range]").forEach((button) => button.addEventListener("click", () => {
    range = button.dataset.range;
    document.querySelectorAll("[data-range]").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    loadCharts().catch((e) => BG.toast(e.message, "error"));
  }));
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => loadCharts().catch(() => {}), 300); });
  document.addEventListener("DOMContentLoaded", () => {
    loadCharts().catch((e) => BG.toast(e.message, "error"));
    setInterval(() => loadCharts().catch(() => {}), 60000);
    setInterval(() => {
      BG.api("/dashboard/api/events?limit=30&kind=alerts").then((d) => renderEvents(d.events)).catch(() => {});
      BG.api("/dashboard/api/events?limit=30&kind=audit&severity=info").then((d) => renderAudit(d.events)).catch(() => {});
    }, 30000);
  });
})();
