"""Time series for the processes page, all from ``process_metrics``.

Range ``hour`` has one-minute buckets, ``day`` ten-minute buckets. Heartbeat metrics
(``rss_mb``, ``queue_depth``) come from every process; the message metrics from the
per-minute rollup (``rollup.py``). In the day view latency shows the mean of the minute
p50s and the highest minute p99 of each bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bisnesgpt.dashboard.rollup import FAILURES
from bisnesgpt.db.pool import Database

RANGES: dict[str, tuple[int, int]] = {"hour": (3_600, 60), "day": (86_400, 600)}
TOP_FAILURE_CODES = 8

_BUCKET = "floor(EXTRACT(EPOCH FROM timestamp) / $2) * $2"
_SINCE = "timestamp >= now() - make_interval(secs => $1)"

RSS_PER_ROLE = f"""
SELECT b, role AS label, sum(v) AS value FROM (
    SELECT {_BUCKET} AS b, process_name, split_part(process_name, '-', 1) AS role, avg(metric_value) AS v
    FROM process_metrics WHERE metric_name = 'rss_mb' AND {_SINCE}
    GROUP BY 1, 2, 3
) per_process GROUP BY 1, 2
"""
QUEUE_DEPTH = f"""
SELECT {_BUCKET} AS b, metadata->>'queue' AS label, max(metric_value) AS value
FROM process_metrics WHERE metric_name = 'queue_depth' AND {_SINCE}
GROUP BY 1, 2
"""
SENT_PER_MINUTE = f"""
SELECT {_BUCKET} AS b, metadata->>'provider' AS label, sum(metric_value) / ($2 / 60.0) AS value
FROM process_metrics WHERE metric_name = 'messages_sent' AND {_SINCE}
GROUP BY 1, 2
"""
FAILED_PER_MINUTE = f"""
SELECT {_BUCKET} AS b, metadata->>'code' AS label, sum(metric_value) / ($2 / 60.0) AS value
FROM process_metrics WHERE metric_name = 'messages_failed' AND {_SINCE}
GROUP BY 1, 2
"""
LATENCY = f"""
SELECT {_BUCKET} AS b, (metadata->>'provider') || ' p50' AS label, avg(metric_value) AS value
FROM process_metrics WHERE metric_name = 'send_latency_p50_ms' AND {_SINCE} GROUP BY 1, 2
UNION ALL
SELECT {_BUCKET} AS b, (metadata->>'provider') || ' p99' AS label, max(metric_value) AS value
FROM process_metrics WHERE metric_name = 'send_latency_p99_ms' AND {_SINCE} GROUP BY 1, 2
"""
NOW_EPOCH = "SELECT EXTRACT(EPOCH FROM now())::float8"
# Minutes the rollup has not reached yet (the minute in progress, and the one that just ended
# until it settles): read them from `messages` (cheap: indexed, a minute or two), per bucket.
# Same watermark as the rollup's, so no minute is counted twice or missed.
ROLLUP_WATERMARK = """
SELECT coalesce(max(timestamp) + interval '1 minute', date_trunc('minute', now()) - make_interval(secs => $1))
FROM process_metrics WHERE metric_name = 'messages_sent'
"""
_MINUTE_BUCKET = "floor(EXTRACT(EPOCH FROM date_trunc('minute', {column})) / $3) * $3"
NOT_ROLLED_UP = f"""
SELECT 'sent' AS chart, {_MINUTE_BUCKET.format(column="sent_at")} AS b, provider AS label, count(*)::float8 AS value
FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound' GROUP BY 2, 3
UNION ALL
SELECT 'failed', {_MINUTE_BUCKET.format(column="f.failed_at")}, f.code, count(*)::float8 FROM ({FAILURES}) f
GROUP BY 2, 3
UNION ALL
SELECT 'latency', {_MINUTE_BUCKET.format(column="sent_at")}, provider || ' p50',
       percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000)
FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound' GROUP BY 2, provider
UNION ALL
SELECT 'latency', {_MINUTE_BUCKET.format(column="sent_at")}, provider || ' p99',
       percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM sent_at - created_at) * 1000)
FROM messages WHERE sent_at >= $1 AND sent_at < $2 AND direction = 'outbound' GROUP BY 2, provider
"""

CHARTS: dict[str, tuple[str, str, str]] = {
    # key: (query, title, unit)
    "sent": (SENT_PER_MINUTE, "Messages sent per minute, by engine", "msg/min"),
    "failed": (FAILED_PER_MINUTE, "Failures per minute, by error code", "msg/min"),
    "queueDepth": (QUEUE_DEPTH, "Queue depth (backlog)", "jobs"),
    "latency": (LATENCY, "Accept → sent latency", "ms"),
    "rss": (RSS_PER_ROLE, "RSS per role", "MB"),
}


@dataclass(frozen=True)
class Window:
    seconds: int
    bucket: int
    start: int
    end: int

    def buckets(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.bucket))


async def chart_data(db: Database, range_name: str) -> dict[str, Any]:
    """Every chart of the range, aligned on one time axis (epoch seconds); gaps are null."""
    seconds, bucket = RANGES[range_name]
    # One snapshot: the rollup cannot move a minute from `messages` into `process_metrics`
    # between the two reads (it would be counted twice, or not at all).
    async with db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        now = float(await conn.fetchval(NOW_EPOCH))
        end = int(now // bucket) * bucket
        window = Window(seconds, bucket, end - (seconds // bucket - 1) * bucket, end)
        xs = window.buckets()
        recent = await _not_rolled_up(conn, float(seconds), bucket)
        charts: dict[str, Any] = {}
        for key, (query, title, unit) in CHARTS.items():
            rows = [dict(r) for r in await conn.fetch(query, float(seconds), float(bucket))]
            series = _series(_merge_recent(key, rows, recent.get(key, [])), xs)
            if key == "failed":
                series = _top(series, TOP_FAILURE_CODES)
            charts[key] = {"title": title, "unit": unit, "series": series}
    return {"range": range_name, "bucketSeconds": bucket, "x": xs, "charts": charts}


def _series(rows: list[Any], xs: list[int]) -> list[dict[str, Any]]:
    index = {x: i for i, x in enumerate(xs)}
    by_label: dict[str, list[float | None]] = {}
    for row in rows:
        position = index.get(int(row["b"]))
        if position is None:
            continue
        label = str(row["label"] or "-")
        values = by_label.setdefault(label, [None] * len(xs))
        values[position] = round(float(row["value"]), 2)
    return [{"label": label, "values": values} for label, values in sorted(by_label.items())]


def _top(series: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The ``keep`` labels with the largest totals; the rest summed as ``other``."""
    if len(series) <= keep:
        return series
    ranked = sorted(series, key=lambda s: sum(v or 0 for v in s["values"]), reverse=True)
    kept, rest = ranked[:keep], ranked[keep:]
    other: list[float | None] = [None] * len(rest[0]["values"])
    for s in rest:
        for i, value in enumerate(s["values"]):
            if value is not None:
                other[i] = round((other[i] or 0) + value, 2)
    return [*kept, {"label": "other", "values": other}]


async def _not_rolled_up(conn: Any, seconds: float, bucket: int) -> dict[str, list[dict[str, Any]]]:
    """Sent/failed counts and latencies of the minutes not rolled up yet, as rows per bucket."""
    since = await conn.fetchval(ROLLUP_WATERMARK, seconds)
    until = datetime.now(UTC) + timedelta(minutes=1)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in await conn.fetch(NOT_ROLLED_UP, since, until, float(bucket)):
        value = float(row["value"])
        if row["chart"] in ("sent", "failed"):
            value = value / (bucket / 60)  # a per-minute rate over the bucket, like the rolled-up rows
        out.setdefault(row["chart"], []).append({"b": int(row["b"]), "label": row["label"], "value": value})
    return out


def _merge_recent(key: str, rows: list[dict[str, Any]], recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the not-yet-rolled-up values into their buckets (summed for rates, the worse for latency)."""
    if not recent:
        return rows
    merged = {(int(r["b"]), str(r["label"])): r for r in rows}
    for extra in recent:
        key_ = (int(extra["b"]), str(extra["label"]))
        if key_ not in merged:
            merged[key_] = extra
        elif key == "latency":
            merged[key_] = {**merged[key_], "value": max(float(merged[key_]["value"]), extra["value"])}
        else:
            merged[key_] = {**merged[key_], "value": float(merged[key_]["value"]) + extra["value"]}
    return list(merged.values())
