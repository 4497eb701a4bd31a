"""Prometheus metrics of the meta engine (bounded labels: operations, outcomes, code classes)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

GRAPH_REQUESTS = Counter(
    "bisnesgpt_meta_graph_requests_total", "Cloud API requests, by operation, profile and outcome",
    ["operation", "profile", "outcome"],
)
GRAPH_SECONDS = Histogram(
    "bisnesgpt_meta_graph_request_seconds", "Cloud API request latency", ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PACING_DEFERRALS = Counter(
    "bisnesgpt_meta_pacing_deferrals_total", "Send jobs delayed instead of sent now, by reason", ["reason"]
)
WEBHOOKS_RECEIVED = Counter(
    "bisnesgpt_meta_webhooks_received_total", "Webhook POSTs, by provider and result", ["provider", "result"]
)
WEBHOOK_ACK_SECONDS = Histogram(
    "bisnesgpt_meta_webhook_ack_seconds", "Time from webhook request to 200 (verify + enqueue)", ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
WEBHOOK_ITEMS = Counter(
    "bisnesgpt_meta_webhook_items_total", "Webhook items processed, by kind and outcome", ["kind", "outcome"]
)
