/* bisnesgpt dashboard: shared helpers and the live stream. No build step, no framework.
 *
 * Every page script registers `BG.load` (how to (re)read its data from /dashboard/api) and
 * listens to live events with `BG.on(name, fn)`. The stream is an EventSource on
 * /dashboard/api/live; the header shows "live" while it is open and "reconnecting…" while
 * the browser retries. Pages keep working without it: they are re-read every 15 s while
 * the stream is down, and once more when it comes back.
 */
"use strict";

(function () {
  const body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const handlers = {};

  /* Focus stays on the acted-on element: the page re-renders after an action, so remember the
     button by its action and the row or card it belongs to, and focus its replacement (or the
     first action of the same row / card when the action changed, e.g. pause -> resume). */
  const SCOPES = ["phone", "queue", "job", "process", "messageId", "companyRow", "keyId", "webhook"];
  function focusAnchor(node) {
    if (!node || node === document.body) return null;
    const scope = node.closest(SCOPES.map((k) => "[data-" + k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()) + "]").join(","));
    if (!scope) return null;
    const key = SCOPES.find((k) => scope.dataset[k] !== undefined);
    return { key, value: scope.dataset[key], action: node.dataset ? node.dataset.action : undefined };
  }
  function restoreFocus(anchor) {
    if (!anchor) return;
    const attr = "data-" + anchor.key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
    const scope = document.querySelector("[" + attr + '="' + CSS.escape(anchor.value) + '"]');
    if (!scope) return;
    const target = (anchor.action && scope.querySelector('[data-action="' + CSS.escape(anchor.action) + '"]:not([disabled])'))
      || scope.querySelector("button[data-action]:not([disabled])") || scope;
    if (target === scope && !scope.hasAttribute("tabindex")) scope.setAttribute("tabindex", "-1");
    target.focus();
  }

  const BG = {
    kind: body.dataset.kind,
    company: body.dataset.company || null,
    page: body.dataset.page,
    load: null,
    liveState: "connecting",

    on(event, fn) { (handlers[event] = handlers[event] || []).push(fn); },
    emit(event, data) { (handlers[event] || []).forEach((fn) => { try { fn(data); } catch (e) { console.error(e); } }); },

    async api(path, options = {}) {
      const init = { method: options.method || "GET", headers: { Accept: "application/json" },
                     credentials: "same-origin" };
      if (init.method !== "GET") {
        init.headers["X-CSRF-Token"] = csrf;
        // No body unless there is one: a route that takes none (or a typed body) must not get stray fields.
        if (options.body !== undefined) {
          init.headers["Content-Type"] = "application/json";
          init.body = JSON.stringify(options.body);
        }
      }
      const response = await fetch(path, init);
      if (response.status === 401) {
        window.location.href = "/dashboard/login?next=" + encodeURIComponent(location.pathname + location.search);
        const error = new Error("signed out");
        error.status = 401;
        throw error;
      }
      const text = await response.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
      if (!response.ok) {
        const detail = (data && (data.detail || data.title)) || response.statusText || ("HTTP " + response.status);
        const error = new Error(detail);
        error.status = response.status;
        throw error;
      }
      return data;
    },

    post(path, payload) { return BG.api(path, { method: "POST", body: payload }); },

    /* el("td", {class: "x", dataset: {a: 1}}, "text", childNode) */
    el(tag, attrs, ...children) {
      const node = document.createElement(tag);
      for (const [key, value] of Object.entries(attrs || {})) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "dataset") Object.entries(value).forEach(([k, v]) => { node.dataset[k] = v; });
        else if (key === "class") node.className = value;
        else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : value);
      }
      for (const child of children.flat()) {
        if (child === null || child === undefined || child === false) continue;
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
      return node;
    },

    /* The query of the page's URL as it was opened (?q=…, ?company=…, ?type=…). */
    params: new URLSearchParams(location.search),

    /* Start a filter control at the value the page's URL gives it, if it gives one. */
    preset(control, name) {
      const value = BG.params.get(name);
      if (value) control.value = value;
      return control;
    },

    /* A page's company filter: hidden from a company's own key; an operator's select is filled
       once, with the companies a /dashboard/api/phones answer lists. */
    companyFilter(selectId, labelId) {
      const select = document.getElementById(selectId);
      if (BG.kind !== "admin") document.getElementById(labelId).hidden = true;
      return {
        select,
        unfilled() { return BG.kind === "admin" && select.options.length <= 1; },
        fill(companies) {
          companies.forEach((c) => select.append(BG.el("option", { value: c.id }, c.name + " (" + c.id + ")")));
        },
      };
    },

    /* Provider error codes with their human names (one table, GET /dashboard/api/error-names,
       read once before the page's first load). */
    errorNames: {},
    errorName(code) {
      return code === null || code === undefined ? null : BG.errorNames[String(code).trim().toUpperCase()] || null;
    },
    /* The code's name as an element to put beside the code (null when the code has none). */
    codeName(code) {
      const name = BG.errorName(code);
      return name ? BG.el("span", { class: "code-name small", dataset: { code: String(code).trim() } }, " (" + name + ")") : null;
    },
    /* The code in front of a job's failure reason ("131026: …", "NOT_ON_WHATSAPP: …"). */
    leadingCode(text) {
      const found = /^\s*\(?#?([A-Z0-9_]+)\)?\s*[:)]/.exec(text || "");
      return found ? found[1] : null;
    },

    badge(status, text) { return BG.el("span", { class: "badge", dataset: { status: status || "unknown" } }, text || status || "?"); },

    confirm(text, okLabel) {
      const dialog = document.getElementById("confirm");
      document.getElementById("confirm-text").textContent = text;
      document.getElementById("confirm-ok").textContent = okLabel || "Confirm";
      return new Promise((resolve) => {
        dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
        dialog.returnValue = "cancel";
        dialog.showModal();
      });
    },

    toast(text, kind) {
      const toast = document.getElementById("toast");
      toast.textContent = text;
      toast.dataset.kind = kind || "info";
      toast.hidden = false;
      clearTimeout(BG._toastTimer);
      BG._toastTimer = setTimeout(() => { toast.hidden = true; }, kind === "error" ? 8000 : 4000);
    },

    /* Run an action: confirm (if asked), POST, toast the outcome, reload the page data.
       `confirm: true` is sent only for an action the operator confirmed in the dialog: routes
       with a typed body (a pairing code's phone number) refuse fields they do not know. */
    async act(path, { confirmText, okLabel, payload, done } = {}) {
      const acted = focusAnchor(document.activeElement);
      if (confirmText && !(await BG.confirm(confirmText, okLabel))) return null;
      const body = confirmText ? Object.assign({ confirm: true }, payload || {}) : payload;
      try {
        const result = await BG.post(path, body);
        BG.toast(done ? done(result) : "Done", "ok");
        if (BG.load) await BG.load();
        restoreFocus(acted);
        return result;
      } catch (error) {
        BG.toast(error.message, "error");
        return null;
      }
    },

    fmt: {
      ago(value) {
        if (!value) return "never";
        const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
        return BG.fmt.duration(seconds) + " ago";
      },
      duration(seconds) {
        if (seconds === null || seconds === undefined) return "–";
        seconds = Math.round(seconds);
        if (seconds < 60) return seconds + "s";
        if (seconds < 3600) return Math.floor(seconds / 60) + "m " + (seconds % 60) + "s";
        if (seconds < 86400) return Math.floor(seconds / 3600) + "h " + Math.floor((seconds % 3600) / 60) + "m";
        return Math.floor(seconds / 86400) + "d " + Math.floor((seconds % 86400) / 3600) + "h";
      },
      time(value) {
        if (!value) return "–";
        const date = typeof value === "number" ? new Date(value) : new Date(value);
        return date.toLocaleString();
      },
      json(value) { return value === null || value === undefined ? "" : JSON.stringify(value); },
    },
  };
  window.BG = BG;

  /* --- page data: (re)loading, the error banner, stale marks ---------------------------- */
  const main = document.getElementById("main");
  const banner = document.getElementById("banner");
  let lastGood = null;

  /* The page's data could not be read: a lasting banner (until a read succeeds) with a retry.
     `unreachable`: no answer at all (the api process is gone), not an error answer. */
  function showProblem(error) {
    const unreachable = !error || error.status === undefined;
    if (unreachable) BG.emit("unreachable", error);
    if (!banner || (error && error.status === 401)) return;
    banner.dataset.kind = unreachable ? "unreachable" : "error";
    document.getElementById("banner-text").textContent = (unreachable
      ? "The API is not answering" : "The API answered with an error: " + error.message)
      + (lastGood ? ". Showing data from " + new Date(lastGood).toLocaleTimeString() + "." : ".");
    banner.hidden = false;
    main.dataset.stale = "true";
  }

  function markFresh() {
    lastGood = Date.now();
    if (banner) banner.hidden = true;
    if (BG.liveState === "live" || !window.EventSource) delete main.dataset.stale;
  }

  /* Read the page's data again (BG.load), keeping the banner and stale marks truthful. */
  BG.refresh = async function () {
    if (!BG.load) return;
    try {
      if (!BG.namesRead) {
        BG.namesRead = BG.api("/dashboard/api/error-names").then((d) => { BG.errorNames = d.names; });
      }
      await BG.namesRead.catch(() => { BG.namesRead = null; });  // codes alone until it answers
      await BG.load();
      markFresh();
      loadAttention();
    } catch (error) {
      showProblem(error);
    }
  };

  if (banner) document.getElementById("banner-retry").addEventListener("click", () => BG.refresh());

  /* --- the live stream --------------------------------------------------------------- */
  const indicator = document.getElementById("live");
  const LABELS = { connecting: "connecting…", live: "● live", reconnecting: "reconnecting…" };
  let pollTimer = null;

  function setState(state) {
    const was = BG.liveState;
    BG.liveState = state;
    if (indicator) { indicator.dataset.state = state; indicator.textContent = LABELS[state] || state; }
    if (state === "live") {
      clearInterval(pollTimer);
      pollTimer = null;
      if (banner && banner.hidden) delete main.dataset.stale;
    } else if (state === "reconnecting") {
      main.dataset.stale = "true";  // what the page shows is no longer kept up to date
      if (was !== "reconnecting") BG.refresh();  // does the API still answer, or is it gone?
      if (!pollTimer) pollTimer = setInterval(() => BG.refresh(), 15000);
    }
  }

  function connect() {
    let source;
    try { source = new EventSource("/dashboard/api/live"); } catch (_) { setState("reconnecting"); return; }
    let dropped = false;
    source.onopen = () => {
      setState("live");
      if (dropped) BG.refresh();  // catch up on what was missed
      dropped = false;
    };
    source.onerror = () => {
      dropped = true;
      setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
    source.addEventListener("hello", (event) => {
      try { BG.servedBy = JSON.parse(event.data).servedBy || null; } catch (_) { /* keep the last one */ }
    });
    ["hello", "overview", "process", "queues", "session"].forEach((name) => {
      source.addEventListener(name, (event) => {
        let data = null;
        try { data = JSON.parse(event.data); } catch (_) { return; }
        BG.emit(name, data);
      });
    });
  }

  /* Every table cell carries its column's name (data-label): on a narrow screen a row is shown
     as a block of labelled cells (dashboard.css). Tables are re-rendered often, so watch them. */
  function labelCells(root) {
    root.querySelectorAll("table.table").forEach((table) => {
      const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
      table.querySelectorAll("tbody tr").forEach((row) => [...row.children].forEach((cell, i) => {
        if (heads[i] && cell.dataset.label !== heads[i]) cell.dataset.label = heads[i];
      }));
    });
  }

  /* --- the attention strip (every page) ------------------------------------------------ */
  const ATTENTION_MS = 10000;

  async function loadAttention() {
    const box = document.getElementById("attention");
    if (!box) return;
    let data;
    try { data = await BG.api("/dashboard/api/attention"); } catch (_) { return; }  // the banner tells
    const count = document.getElementById("attention-count");
    count.dataset.status = data.items.some((i) => i.severity === "error") ? "error" : data.items.length ? "warning" : "healthy";
    count.textContent = data.items.length ? String(data.items.length) : "nothing";
    box.dataset.state = data.status;
    box.dataset.worst = data.items.some((i) => i.severity === "error") ? "error" : "warning";
    document.getElementById("attention-items").replaceChildren(...data.items.map((item) => BG.el("li", {
        dataset: { kind: item.kind, severity: item.severity, company: item.companyId,
                   phone: item.phoneIndex === null ? "" : String(item.phoneIndex) } },
      BG.badge(item.severity, item.severity), " ",
      BG.el("a", { href: item.link }, item.title),
      item.detail ? BG.el("span", { class: "small" }, " — " + item.detail) : null)));
    BG.emit("attention", data);
  }
  BG.loadAttention = loadAttention;

  /* Relative times ("3m 5s ago") keep ticking: every element with data-ago is re-written. */
  function tick() {
    document.querySelectorAll("[data-ago]").forEach((node) => { node.textContent = BG.fmt.ago(node.dataset.ago); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setInterval(tick, 5000);
    loadAttention();
    setInterval(loadAttention, ATTENTION_MS);
    if (main) {
      labelCells(main);
      new MutationObserver(() => labelCells(main)).observe(main, { childList: true, subtree: true });
    }
    setState("connecting");
    BG.refresh();
    if (window.EventSource) connect(); else setState("reconnecting");
  });
})();
