/* Phones & sessions: counts, a card per phone; live QR / pairing code; session and Cloud API actions. */
"use strict";

(function () {
  const { el, badge, fmt } = BG;
  const cardsBox = document.getElementById("phone-cards");
  const companyFilter = BG.companyFilter("company-filter", "company-filter-label");
  const companySelect = companyFilter.select;
  const typeSelect = BG.preset(document.getElementById("type-filter"), "type");
  const COUNT_LABELS = [["total", "Total"], ["connected", "Connected"], ["meta", "Meta / 360dialog"],
                        ["wwebjs", "WhatsApp Web"], ["disconnected", "Disconnected"], ["activeNow", "Active now"]];

  function path(phone, tail) {
    return "/dashboard/api/phones/" + encodeURIComponent(phone.companyId) + "/" + phone.phoneIndex + tail;
  }

  function qrBlock(phone) {
    if (phone.status === "qr" && phone.qrAvailable) {
      return el("figure", { class: "qr" },
        el("img", { src: path(phone, "/qr.png") + "?t=" + Date.now(), alt: "QR code for " + phone.companyId + " phone " + phone.phoneIndex,
                    width: 220, height: 220, dataset: { qr: phone.companyId + ":" + phone.phoneIndex } }),
        el("figcaption", { class: "small muted" }, "Scan with WhatsApp → Linked devices"));
    }
    if (phone.status === "pairing_code" && phone.pairingCode) {
      return el("p", { class: "pairing" }, "Pairing code: ", el("strong", { class: "mono", dataset: { pairing: "1" } }, phone.pairingCode));
    }
    return null;
  }

  /* A session's actions, as far as they can do something now: after a logout (unlinked, stopped)
     the way back is "start (new QR)"; restarting a live session asks first; stop, logout and
     restart are disabled when there is nothing to stop, unlink or restart. */
  function wwebjsActions(phone) {
    const name = phone.companyId + " phone " + phone.phoneIndex;
    const live = phone.status === "ready" || phone.status === "authenticated";
    const stopped = phone.desiredState === "stopped";
    const loggedOut = stopped && !phone.paired && phone.status === "disconnected";
    const act = (action, { label, confirmText, disabled, why } = {}) => el("button", {
      dataset: { action }, class: action === "logout" ? "danger" : (label && label !== action ? "primary" : ""),
      disabled: disabled || null, title: disabled ? why : null,
      onclick: () => BG.act(path(phone, "/session/" + action), { confirmText, okLabel: action,
        done: (r) => action + ": " + (r.state === "pending" ? "queued" : "done") }) }, label || action);
    return el("div", { class: "actions" },
      act("start", { label: loggedOut ? "start (new QR)" : "start", disabled: phone.status === "ready",
                     why: "the session is connected" }),
      act("restart", { confirmText: live ? "Restart the connected session of " + name + "? It reconnects; messages wait meanwhile." : null,
                       disabled: loggedOut, why: "logged out: start it to link the device again with a new QR code" }),
      act("stop", { confirmText: "Stop the session of " + name + "? It stays stopped until started.",
                    disabled: stopped && phone.status === "disconnected", why: "the session is stopped" }),
      act("logout", { confirmText: "Log out " + name + "? The device is unlinked; it needs a new QR scan.",
                      disabled: !phone.paired, why: "no device is linked" }),
      el("button", { dataset: { action: "pairing-code" }, onclick: async () => {
        const number = window.prompt("Phone number to link (international format, e.g. +60123456789)");
        if (number) await BG.act(path(phone, "/pairing-code"), { payload: { phoneNumber: number }, done: () => "pairing code requested" });
      } }, "pairing code"),
      removeButton(phone));
  }

  function cloudActions(phone) {
    return el("div", { class: "actions" },
      phone.status === "paused" ? el("button", { dataset: { action: "resume" }, onclick: () => BG.act(path(phone, "/resume"), {
        confirmText: "Resume sending for phone " + phone.phoneIndex + " of " + phone.companyId + " now? Meta paused it ("
          + (phone.reason || "account restricted") + "); sending again early may be refused again.",
        okLabel: "Resume", done: (r) => "sending resumed; " + r.released + " held message(s) released" }) }, "resume") : null,
      phone.connectionType === "360dialog" ? null : el("button", { dataset: { action: "verify" }, onclick: () => BG.act(path(phone, "/verify"), {
        done: (r) => "verified: quality " + (r.verification.qualityRating || "?") }) }, "verify"),
      removeButton(phone));
  }

  function removeButton(phone) {
    return el("button", { class: "danger", dataset: { action: "remove" }, onclick: () => BG.act(path(phone, "/remove"), {
      confirmText: "Remove phone " + phone.phoneIndex + " of " + phone.companyId + "? Its messages can no longer be sent.",
      okLabel: "Remove", done: () => "phone removed" }) }, "remove");
  }

  /* The phone's settings: the number shown and per-chat order, saved through the phone service. */
  function settingsBlock(phone) {
    const id = "settings-" + phone.companyId + "-" + phone.phoneIndex;
    const display = el("input", { id: id + "-display", value: phone.displayNumber || "", size: 14, autocomplete: "off" });
    const ordered = el("input", { id: id + "-ordered", type: "checkbox", checked: phone.orderedSends });
    return el("details", { class: "settings", dataset: { settings: "1" } }, el("summary", {}, "Settings"),
      el("form", { class: "filters", onsubmit: (event) => {
        event.preventDefault();
        BG.act(path(phone, "/settings"), { payload: { displayPhoneNumber: display.value.trim(), orderedSends: ordered.checked },
          done: () => "settings saved" });
      } },
        el("label", { for: id + "-display" }, "Number shown", display),
        el("label", { for: id + "-ordered", class: "check" }, ordered, "Messages to one chat leave in order"),
        el("button", { type: "submit", class: "save-settings" }, "Save settings")),
      rateBlock(phone, id));
  }

  /* The send rate in effect; a Cloud API / 360dialog phone's own rate is edited here (empty or
     "use default": the default again). WhatsApp-Web sessions share one rate, shown only. */
  function rateBlock(phone, id) {
    const rate = phone.rateLimit;
    if (!rate) return null;
    const inEffect = el("p", { class: "small", dataset: { field: "rate" } }, "In effect: " + rate.effective + " messages/s",
      rate.perPhone ? (rate.configured === null ? " (the default)" : " (this phone's own; default " + rate.default + ")")
                    : " (WWEBJS_MAX_MESSAGES_PER_SECOND, shared by every WhatsApp-Web session)");
    if (!rate.perPhone) return inEffect;
    const input = el("input", { id: id + "-rate", type: "number", min: "0.01", max: "10000", step: "any", size: 8,
                                value: rate.configured === null ? "" : String(rate.configured), placeholder: "default " + rate.default });
    const save = (value) => BG.act(path(phone, "/rate-limit"), { payload: { messagesPerSecond: value },
      done: (r) => "rate limit: " + r.rateLimit.effective + " messages/s" + (value === null ? " (default)" : "") });
    return el("form", { class: "filters", dataset: { rateForm: "1" }, onsubmit: (event) => {
      event.preventDefault();
      save(input.value.trim() === "" ? null : Number(input.value));
    } },
      el("label", { for: id + "-rate" }, "Messages per second", input),
      el("button", { type: "submit", class: "save-rate" }, "Save rate"),
      el("button", { type: "button", class: "reset-rate", disabled: rate.configured === null || null,
                     title: rate.configured === null ? "already the default" : null, onclick: () => save(null) }, "Use default"),
      inEffect);
  }

  /* A test message from this phone: sent like any message, then followed by its id until it is
     final (read or failed, at most two minutes); the last one stays shown when the card re-renders. */
  const tests = {};
  const FINAL = ["read", "failed"];
  function testBlock(phone) {
    const key = phone.companyId + ":" + phone.phoneIndex;
    const id = "test-" + phone.companyId + "-" + phone.phoneIndex;
    const to = el("input", { id: id + "-to", size: 14, autocomplete: "off", inputmode: "tel", placeholder: "+60123456789" });
    const text = el("input", { id: id + "-text", size: 18, autocomplete: "off", value: "Test from the dashboard" });
    const last = tests[key];
    return el("details", { class: "test-send", open: last ? true : null }, el("summary", {}, "Send a test message"),
      el("form", { class: "filters", onsubmit: async (event) => {
        event.preventDefault();
        const result = await BG.act(path(phone, "/test-message"), { payload: { to: to.value.trim(), text: text.value },
          done: (r) => "test message accepted: " + r.messageId });
        if (result) follow(phone, result.messageId);
      } },
        el("label", { for: id + "-to" }, "To", to), el("label", { for: id + "-text" }, "Text", text),
        el("button", { type: "submit", class: "send-test" }, "Send")),
      el("p", { class: "small", role: "status", dataset: { testMessage: key } }, last ? testLine(last) : ""));
  }
  function testLine(test) {
    return el("span", {}, "Message ", el("a", { class: "mono", href: "/dashboard/messages?company=" + encodeURIComponent(test.companyId)
      + "&id=" + encodeURIComponent(test.messageId) }, test.messageId), ": ",
      el("span", { dataset: { status: test.status } }, badge(test.status, test.status)), test.error ? el("span", { class: "error" }, " " + test.error) : null, test.error ? BG.codeName(BG.leadingCode(test.error)) : null);
  }
  async function follow(phone, messageId) {
    const key = phone.companyId + ":" + phone.phoneIndex;
    const test = tests[key] = { companyId: phone.companyId, messageId, status: "queued", error: null };
    const started = Date.now();
    while (tests[key] === test && Date.now() - started < 120000) {
      const node = cardsBox.querySelector(`[data-test-message="${CSS.escape(key)}"]`);
      if (node) { node.replaceChildren(testLine(test)); node.closest("details").open = true; }
      if (FINAL.includes(test.status)) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      try {
        const m = await BG.api("/dashboard/api/messages/" + encodeURIComponent(phone.companyId) + "/" + encodeURIComponent(messageId));
        test.status = m.status;
        test.error = m.error && m.error.code ? m.error.code + (m.error.title ? ": " + m.error.title : "") : null;
      } catch (_) { /* the next tick tries again */ }
    }
  }

  /* What the badge says: a Cloud API phone is "connected" while its sends succeed, "paused until HH:MM". */
  function statusText(phone) {
    if (phone.status === "paused" && phone.pausedUntil) {
      return "paused until " + new Date(phone.pausedUntil).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
    if (phone.kind === "cloud" && phone.status === "ready") return "connected";
    return phone.status.replace("_", " ");
  }

  /* Today's sends (UTC) against the caps in effect (warm-up applied; 0: no cap), and the warm-up day. */
  function against(count, cap, field) {
    const over = cap > 0 && count >= cap;
    return el("span", { class: over ? "error" : "", dataset: { field } }, cap > 0 ? count + " / " + cap : count + " (no cap)",
      over ? " — cap reached" : "");
  }
  function sendingRows(s) {
    const warmup = s.warmupDay ? "day " + s.warmupDay + " of " + s.warmupDays
      : s.warmupDays ? "not warming up (" + s.warmupDays + "-day schedule: over, or not paired yet)" : "none";
    return [["Sent today", against(s.sentToday, s.messageCap, "sent-today")],
            ["New chats today", against(s.newChatsToday, s.newChatCap, "new-chats-today")],
            ["Warm-up", el("span", { dataset: { field: "warmup" } }, warmup)]];
  }

  function card(phone) {
    const v = phone.verification;
    const rows = [
      ["Type", phone.connectionType], ["Number", phone.displayNumber || "–"],
      ["Last seen", phone.lastSeen ? el("span", { dataset: { ago: phone.lastSeen, field: "last-seen" } }, fmt.ago(phone.lastSeen))
                                   : el("span", { dataset: { field: "last-seen" } }, "no messages yet")],
    ];
    if (phone.kind === "wwebjs") {
      rows.push(["Wanted", phone.desiredState], ["Owner", phone.owner || "–"]);
      if (phone.breaker && phone.breaker.open) rows.push(["Breaker", "open: " + (phone.breaker.reason || "")]);
      if (phone.sending) rows.push(...sendingRows(phone.sending));
    } else {
      rows.push(["Phone number id", phone.metaPhoneNumberId || phone.dialog360ChannelId || "–"], ["WABA", phone.metaWabaId || "–"]);
      if (v && v.ok) rows.push(["Verified name", v.verifiedName || "–"], ["Quality", v.qualityRating || "–"],
                               ["2-step verification", v.codeVerificationStatus || "–"], ["Checked", fmt.ago(v.checkedAt)]);
    }
    return el("article", { class: "card phone", id: "phone-" + phone.companyId + "-" + phone.phoneIndex, dataset: { phone: phone.companyId + ":" + phone.phoneIndex, status: phone.status, kind: phone.kind } },
      el("header", {}, el("h3", {}, phone.companyName + " · phone " + phone.phoneIndex), badge(phone.status, statusText(phone))),
      el("dl", { class: "fields" }, rows.map(([label, value]) => el("div", { class: "field" }, el("dt", {}, label), el("dd", {}, value)))),
      phone.reason && phone.status !== "ready" ? el("p", { class: "small error", dataset: { field: "reason" } }, phone.reason,
        BG.codeName(phone.metadata && phone.metadata.code)) : null,
      phone.kind === "wwebjs" ? qrBlock(phone) : null,
      phone.kind === "wwebjs" ? wwebjsActions(phone) : cloudActions(phone),
      testBlock(phone), settingsBlock(phone));
  }

  /* Worst first: broken, then paused, then waiting to be linked / unknown, then connected. */
  const RANK = { error: 0, disconnected: 0, paused: 1, qr: 2, pairing_code: 2, initializing: 3, authenticated: 3,
                 pending: 3, ready: 4 };
  const rank = (phone) => (RANK[phone.status] ?? 3);
  const ACTIVE_MS = 15 * 60 * 1000;
  /* What each count tile shows when pressed (the same rules as the counts). */
  const TILE_FILTERS = {
    total: () => true,
    connected: (p) => p.status === "ready",
    meta: (p) => p.kind === "cloud",
    wwebjs: (p) => p.kind === "wwebjs",
    disconnected: (p) => p.status === "disconnected" || p.status === "error",
    activeNow: (p) => !!p.lastSeen && Date.now() - new Date(p.lastSeen).getTime() < ACTIVE_MS,
  };
  let tile = "total";
  let lastPhones = [];

  function renderCounts(counts) {
    document.getElementById("counts").replaceChildren(...COUNT_LABELS.map(([key, label]) =>
      el("button", { type: "button", class: "tile", "aria-pressed": String(tile === key), dataset: { count: key },
                     title: "show " + label.toLowerCase() + " phones only",
                     onclick: () => { tile = tile === key && key !== "total" ? "total" : key; renderCards(); } },
        el("strong", {}, counts[key]), el("span", {}, label))));
  }

  function renderCards() {
    document.querySelectorAll("#counts [data-count]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.count === tile)));
    const shown = lastPhones.filter(TILE_FILTERS[tile]).sort((a, b) => rank(a) - rank(b));
    cardsBox.dataset.filter = tile;
    cardsBox.replaceChildren(...(shown.length ? shown.map(card)
      : [el("p", { class: "muted" }, lastPhones.length ? "No phones match this tile." : "No phones configured" + (companySelect.value ? " for this company." : "."))]));
  }

  /* A session event read while the list is being (re)read waits for it: the list's answer may be
     older than the event and would otherwise overwrite the card with the earlier status. */
  let listing = Promise.resolve();
  BG.load = function () {
    const read = loadList();
    listing = read.catch(() => {});
    return read;
  };

  async function loadList() {
    const query = new URLSearchParams();
    // Before the company list is filled, the page's ?company= (a link from the attention strip) applies.
    const company = companySelect.value || (companyFilter.unfilled() ? BG.params.get("company") : null);
    if (company) query.set("company", company);
    if (typeSelect.value) query.set("type", typeSelect.value);
    const data = await BG.api("/dashboard/api/phones?" + query);
    renderCounts(data.counts);
    if (companyFilter.unfilled()) { companyFilter.fill(data.companies); BG.preset(companySelect, "company"); }
    const newCompany = document.getElementById("new-phone-company");
    if (!newCompany.options.length) data.companies.forEach((c) => newCompany.append(el("option", { value: c.id }, c.name + " (" + c.id + ")")));
    lastPhones = data.phones;
    renderCards();
  }

  /* A session changed: update its card in place (status, QR, pairing code). The card is looked up
     when the answer arrives (a reload may have replaced it meanwhile), and only the latest read
     of a phone is applied (answers can arrive out of order). A card being edited is left alone. */
  const reads = {};
  BG.on("session", (event) => {
    const key = event.companyId + ":" + event.phoneIndex;
    const selector = `[data-phone="${CSS.escape(key)}"]`;
    if (!cardsBox.querySelector(selector)) return;
    const mine = reads[key] = (reads[key] || 0) + 1;
    listing.then(() => BG.api(path(event, ""))).then((phone) => {
      if (reads[key] !== mine) return;
      lastPhones = lastPhones.map((p) => (p.companyId === phone.companyId && p.phoneIndex === phone.phoneIndex ? phone : p));
      const node = cardsBox.querySelector(selector);
      if (!node || (node.contains(document.activeElement) && document.activeElement.matches("input, select"))) return;
      const fresh = card(phone);
      node.querySelectorAll("details").forEach((d, i) => { if (d.open) fresh.querySelectorAll("details")[i].open = true; });
      node.replaceWith(fresh);
    }).catch(() => {});
  });

  const newCompany = document.getElementById("new-phone-company");
  const newType = document.getElementById("new-phone-type");
  const phoneError = document.getElementById("phone-error");
  if (BG.kind !== "admin") document.getElementById("new-phone-company-label").hidden = true;
  newType.addEventListener("change", () => {
    document.getElementById("new-phone-cloud").hidden = newType.value !== "meta_direct";
    document.getElementById("new-phone-d360").hidden = newType.value !== "360dialog";
  });
  document.getElementById("new-phone").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => document.getElementById(id).value.trim() || null;
    const cloud = newType.value === "meta_direct";
    const d360 = newType.value === "360dialog";
    try {
      const added = await BG.post("/dashboard/api/phones", {
        companyId: BG.kind === "admin" ? newCompany.value : null, phoneIndex: Number(document.getElementById("new-phone-index").value),
        connectionType: newType.value, displayPhoneNumber: value("new-phone-display"),
        phoneNumberId: cloud ? value("new-phone-number-id") : null, wabaId: cloud ? value("new-phone-waba-id") : null,
        accessToken: cloud ? value("new-phone-token") : null,
        clientId: d360 ? value("new-phone-client-id") : null, channelId: d360 ? value("new-phone-channel-id") : null,
        apiKey: d360 ? value("new-phone-api-key") : null });
      phoneError.hidden = true;
      document.getElementById("new-phone-token").value = "";
      document.getElementById("new-phone-api-key").value = "";
      BG.toast("phone " + added.phoneIndex + " of " + added.companyId + " added", "ok");
      await BG.load();
    } catch (error) {
      phoneError.textContent = error.message;
      phoneError.hidden = false;
    }
  });

  companySelect.addEventListener("change", () => BG.load().catch((e) => BG.toast(e.message, "error")));
  typeSelect.addEventListener("change", () => BG.load().catch((e) => BG.toast(e.message, "error")));
})();
