"""Prometheus metrics of the WhatsApp-Web engine (labels bounded: statuses, levels, outcomes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SESSIONS = Gauge("bisnesgpt_wwebjs_sessions", "Sessions driven by this process, by status", ["status"])
STANDBY_SESSIONS = Gauge("bisnesgpt_wwebjs_standby_sessions", "Wanted sessions another process drives")
INBOUND = Counter("bisnesgpt_wwebjs_inbound_total", "Inbound messages received", ["result"])
ACKS = Counter("bisnesgpt_wwebjs_acks_total", "Delivery acks received", ["level"])
