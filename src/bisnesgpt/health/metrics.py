"""Prometheus metrics of this process (bounded label cardinality: no ids in labels)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES_PROCESSED = Counter(
    "bisnesgpt_messages_processed_total", "Send jobs processed, by queue and outcome", ["queue", "outcome"]
)
SEND_SECONDS = Histogram(
    "bisnesgpt_send_job_seconds", "Time to process one send job", ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SEND_JOBS_REFUSED = Counter(
    "bisnesgpt_send_jobs_refused_total", "Send jobs failed for naming no message they may send, by queue and reason",
    ["queue", "code"],
)
MESSAGES_ACCEPTED = Counter("bisnesgpt_messages_accepted_total", "Messages accepted by the API", ["queue"])
QUEUE_DEPTH = Gauge("bisnesgpt_queue_depth", "Jobs waiting (wait + delayed + prioritized)", ["queue"])
PROCESS_UP = Gauge("bisnesgpt_process_up", "1 while this process is serving", ["role"])
HEARTBEATS = Counter("bisnesgpt_heartbeats_total", "Heartbeats written", ["result"])
EVENT_LOOP_LAG = Gauge("bisnesgpt_event_loop_lag_seconds", "Event loop lag at the last heartbeat")
DB_POOL = Gauge("bisnesgpt_db_pool_connections", "Database pool connections", ["state"])


def render() -> tuple[bytes, str]:
    """The exposition text of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
