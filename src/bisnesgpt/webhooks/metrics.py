"""Prometheus metrics of webhook delivery (no endpoint or company ids in labels).

Counters are this process's attempts; the backlog gauges are the whole system's rows
(every delivering process reports the same numbers, refreshed every few seconds).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERED = Counter("bisnesgpt_webhook_delivered_total", "Webhook deliveries that got a 2xx")
FAILED = Counter("bisnesgpt_webhook_failed_total", "Webhook delivery attempts that failed (any reason)")
DEAD = Counter("bisnesgpt_webhook_dead_total", "Webhook deliveries dead-lettered after the retry horizon")
BACKLOG = Gauge(
    "bisnesgpt_webhook_backlog", "Webhook delivery rows not finished, by state (whole system)", ["state"]
)
LAG = Gauge(
    "bisnesgpt_webhook_lag_seconds",
    "Age of the oldest due webhook delivery not yet being attempted (whole system; 0 = keeping up)",
)
DEAD_RECENT = Gauge("bisnesgpt_webhook_dead_last_day", "Deliveries dead-lettered in the last 24 h (whole system)")
IN_FLIGHT = Gauge("bisnesgpt_webhook_in_flight", "Webhook requests in flight in this process")
ATTEMPT_SECONDS = Histogram(
    "bisnesgpt_webhook_attempt_seconds", "Duration of one webhook delivery attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENT_TO_DELIVERY_SECONDS = Histogram(
    "bisnesgpt_webhook_event_to_delivery_seconds",
    "From the event's creation to its 2xx, for first-attempt deliveries",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUTO_DISABLED = Counter("bisnesgpt_webhook_endpoints_auto_disabled_total", "Endpoints disabled for failing too long")
