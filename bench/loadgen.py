"""An HTTP/1.1 keep-alive load generator meant to run in its own process.

Raw asyncio streams (no client library) keep the generator's own cost per request small;
it reports its CPU use so a run can tell whether the generator was the bottleneck.

Modes:
* closed loop: ``connections`` workers, each sending the next request when the previous
  answer arrives — finds saturation throughput;
* open loop: requests started at a fixed ``rate`` regardless of answers (no coordinated
  omission: latency is measured from the scheduled start) — latency at a given load.

Several request shapes (``--requests-file``: a JSON list of ``{method, url, body, headers}``)
are sent round-robin, e.g. to spread messages over phones and recipients. The result (JSON
on stdout) carries ``started_at``: the wall-clock start of the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    duration: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    # The same latencies split by status: under overload a 503's tail and a 202's are separate goals.
    latencies_by_status: dict[str, list[float]] = field(default_factory=dict)
    generator_cpu_seconds: float = 0.0
    started_at: float = 0.0  # time.time() when the measured window began

    def record(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        self.latencies_ms.append(latency_ms)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.latencies_by_status.setdefault(str(status), []).append(latency_ms)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration else 0.0


def build_request(method: str, url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    if length:
        await reader.readexactly(length)
    return status


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def roundtrip(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        try:
            return await _read_response(self.reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.writer.close()
            self.writer = None
            raise


class _RoundRobin:
    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.n = 0

    def next(self) -> bytes:
        request = self.requests[self.n % len(self.requests)]
        self.n += 1
        return request


async def closed_loop(url: str, requests: list[bytes], connections: int, duration: float,
                      warmup: float) -> LoadResult:
    parts = urlsplit(url)
    result = LoadResult()
    measuring = False
    stop_at = time.perf_counter() + warmup + duration
    shapes = _RoundRobin(requests)

    async def worker() -> None:
        conn = _Conn(parts.hostname or "127.0.0.1", parts.port or 80)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                status = await conn.roundtrip(shapes.next())
            except (OSError, asyncio.IncompleteReadError, ValueError):
                if measuring:
                    result.errors += 1
                await asyncio.sleep(0.01)
                continue
            if measuring:
                result.record(status, (time.perf_counter() - start) * 1000)

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    measuring = True
    cpu0, t0 = _cpu(), time.perf_counter()
    result.started_at = time.time()
    await asyncio.gather(*tasks)
    result.duration = time.perf_counter() - t0
    result.generator_cpu_seconds = _cpu() - cpu0
    return result


async def open_loop(url: str, requests: list[bytes], rate: float, duration: float, connections: int) -> LoadResult:
    """Start a request every 1/rate s on a free connection (more connections if all are busy)."""
    parts = urlsplit(url)
    result = LoadResult()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Conn(parts.hostname or "127.0.0.1", parts.port or 80))
    pending: set[asyncio.Task[None]] = set()
    shapes = _RoundRobin(requests)

    async def one(scheduled: float, request: bytes) -> None:
        conn = await idle.get() if not idle.empty() else _Conn(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            status = await conn.roundtrip(request)
            result.record(status, (time.perf_counter() - scheduled) * 1000)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
        finally:
            idle.put_nowait(conn)

    interval = 1.0 / rate
    cpu0, t0 = _cpu(), time.perf_counter()
    result.started_at = time.time()
    n = 0
    while True:
        scheduled = t0 + n * interval
        if scheduled - t0 >= duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled, shapes.next()))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.wait(pending, timeout=30)
    # Requests still unanswered are cut off: errors (they may or may not have been served).
    for task in list(pending):
        task.cancel()
        result.errors += 1
    result.duration = time.perf_counter() - t0
    result.generator_cpu_seconds = _cpu() - cpu0
    return result


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate (0 = closed loop)")
    parser.add_argument("--requests-file", help="JSON list of {method, url, body, headers}, sent round-robin")
    args = parser.parse_args()
    if args.requests_file:
        with open(args.requests_file) as handle:
            shapes = json.load(handle)
    else:
        shapes = [{"method": args.method, "url": args.url, "body": args.body,
                   "headers": dict(h.split(": ", 1) for h in args.header)}]
    requests = []
    for shape in shapes:
        headers = dict(shape.get("headers") or {})
        body = str(shape.get("body") or "")
        if body:
            headers.setdefault("Content-Type", "application/json")
        requests.append(build_request(shape.get("method", "GET"), shape["url"], body.encode(), headers))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.rate > 0:
        result = asyncio.run(open_loop(args.url, requests, args.rate, args.duration, args.connections))
    else:
        result = asyncio.run(closed_loop(args.url, requests, args.connections, args.duration, args.warmup))
    json.dump(asdict(result), sys.stdout)


if __name__ == "__main__":
    main()
