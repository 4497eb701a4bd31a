"""Time series for the processes page, all from ``process_metrics``.

Range ``hour`` has one-minute buckets, ``day`` ten-minute buckets. Heartbeat metrics
(``rss_mb``, ``queue_depth``) come from every process; the message metrics from the
per-minute rollup (``rollup.py``). In the day view latency shows the mean of the minute
p50s and the highest minute p99 of each bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
from typing_extensions import TypedDict

from bisnesgpt.db.pool import Database
from bisnesgpt.db.queries import load_queries

SQL = load_queries("bisnesgpt.dashboard")

RangeName = Literal["hour", "day"]
ChartKey = Literal["sent", "failed", "queueDepth", "latency", "rss"]
# range -> (seconds shown, bucket seconds)
RANGES: dict[RangeName, tuple[int, int]] = {"hour": (3_600, 60), "day": (86_400, 600)}
TOP_FAILURE_CODES = 8


@dataclass(frozen=True)
class ChartInfo:
    """How a chart is titled and what unit its values are in."""

    title: str
    unit: str


# In the order the page shows them; ``metric_series`` answers rows for each key.
CHARTS: dict[ChartKey, ChartInfo] = {
    "sent": ChartInfo("Messages sent per minute, by engine", "msg/min"),
    "failed": ChartInfo("Failures per minute, by error code", "msg/min"),
    "queueDepth": ChartInfo("Queue depth (backlog)", "jobs"),
    "latency": ChartInfo("Accept → sent latency", "ms"),
    "rss": ChartInfo("RSS per role", "MB"),
}


class Series(TypedDict):
    """One line of a chart: a value per bucket of the time axis (null: no data)."""

    label: str
    values: list[float | None]


class Chart(TypedDict):
    """One chart with its series."""

    title: str
    unit: str
    series: list[Series]


class ChartData(TypedDict):
    """Every chart of a range on one time axis (``x``: bucket starts, epoch seconds)."""

    range: RangeName
    bucketSeconds: int
    x: list[int]
    charts: dict[ChartKey, Chart]


@dataclass(frozen=True)
class Point:
    """One value of one series in one bucket (``bucket``: its start, epoch seconds)."""

    bucket: int
    label: str | None
    value: float

    @property
    def key(self) -> tuple[int, str]:
        """Where the point goes: bucket and label (as text)."""
        return self.bucket, str(self.label)


@dataclass(frozen=True)
class Window:
    """The time axis: ``seconds`` long, ``bucket`` seconds a step, from ``start`` to ``end`` (bucket starts)."""

    seconds: int
    bucket: int
    start: int
    end: int

    def buckets(self) -> list[int]:
        """Every bucket start, oldest first."""
        return list(range(self.start, self.end + 1, self.bucket))


async def chart_data(db: Database, range_name: RangeName) -> ChartData:
    """Every chart of the range, aligned on one time axis (epoch seconds); gaps are null."""
    seconds, bucket = RANGES[range_name]
    # One snapshot: the rollup cannot move a minute from `messages` into `process_metrics`
    # between the two reads (it would be counted twice, or not at all).
    async with db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        now = float(await conn.fetchval(SQL.now_epoch))
        end = int(now // bucket) * bucket
        window = Window(seconds, bucket, end - (seconds // bucket - 1) * bucket, end)
        xs = window.buckets()
        recent = await _not_rolled_up(conn, float(seconds), bucket)
        rolled: dict[str, list[Point]] = {}
        for row in await conn.fetch(SQL.metric_series, float(seconds), float(bucket)):
            rolled.setdefault(row["chart"], []).append(Point(int(row["b"]), row["label"], float(row["value"])))
    charts: dict[ChartKey, Chart] = {}
    for key, info in CHARTS.items():
        series = _series(_merge_recent(key, rolled.get(key, []), recent.get(key, [])), xs)
        if key == "failed":
            series = _top(series, TOP_FAILURE_CODES)
        charts[key] = {"title": info.title, "unit": info.unit, "series": series}
    return {"range": range_name, "bucketSeconds": bucket, "x": xs, "charts": charts}


def _series(points: list[Point], xs: list[int]) -> list[Series]:
    index = {x: i for i, x in enumerate(xs)}
    by_label: dict[str, list[float | None]] = {}
    for point in points:
        position = index.get(point.bucket)
        if position is None:
            continue
        values = by_label.setdefault(str(point.label or "-"), [None] * len(xs))
        values[position] = round(point.value, 2)
    return [{"label": label, "values": values} for label, values in sorted(by_label.items())]


def _top(series: list[Series], keep: int) -> list[Series]:
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


async def _not_rolled_up(conn: asyncpg.Connection, seconds: float, bucket: int) -> dict[str, list[Point]]:
    """Sent/failed rates and latencies of the minutes not rolled up yet, as points per bucket."""
    since = await conn.fetchval(SQL.not_rolled_up_since, seconds)
    until = datetime.now(UTC) + timedelta(minutes=1)
    per_minute = bucket / 60  # sent and failed become a per-minute rate over the bucket, like the rolled-up rows
    out: dict[str, list[Point]] = {}
    for row in await conn.fetch(SQL.sent_not_rolled_up, since, until, float(bucket)):
        value = float(row["value"])
        if row["chart"] == "sent":
            value = value / per_minute
        out.setdefault(row["chart"], []).append(Point(int(row["b"]), row["label"], value))
    failed: dict[tuple[int, str], int] = {}
    for row in await conn.fetch(SQL.failures_per_minute, since, until):
        key = (int(row["minute"].timestamp() // bucket) * bucket, row["code"])
        failed[key] = failed.get(key, 0) + int(row["n"])
    if failed:
        out["failed"] = [Point(b, code, n / per_minute) for (b, code), n in failed.items()]
    return out


def _merge_recent(key: str, points: list[Point], recent: list[Point]) -> list[Point]:
    """Add the not-yet-rolled-up values into their buckets (summed for rates, the worse for latency)."""
    if not recent:
        return points
    merged = {p.key: p for p in points}
    for extra in recent:
        found = merged.get(extra.key)
        if found is None:
            merged[extra.key] = extra
        elif key == "latency":
            merged[extra.key] = Point(found.bucket, found.label, max(found.value, extra.value))
        else:
            merged[extra.key] = Point(found.bucket, found.label, found.value + extra.value)
    return list(merged.values())
