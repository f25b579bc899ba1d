"""Fan-out and burst benchmark for django_sse against a real ASGI server.

Run from the repository root (``make bench`` does the first)::

    .venv/bin/python benchmarks/fanout.py
    .venv/bin/python benchmarks/fanout.py --server daphne --layer memory --clients 100,1000
    .venv/bin/python benchmarks/fanout.py --json results.json

Each scenario gets a freshly started server (uvicorn or daphne, one process,
``tests.settings``) on 127.0.0.1, so its memory and thread numbers are its own.
The load client is this process: raw asyncio connections, a hand-written
HTTP/1.1 GET and an incremental chunked + SSE parser, cheap enough for
thousands of streams. With the Redis layer, this process also publishes, with
``django_sse.asend_event`` over the same ``RedisPubSubChannelLayer``; with the
in-memory layer it asks the server to publish (``POST /test/publish/``).

Scenarios:

* fan-out: K clients on one channel; once all are connected, publish one
  event carrying ``time.time()``; per-client delivery latency; several rounds.
* burst: N clients on one channel; publish 1,000 events as fast as possible;
  per subscriber, how many arrived and whether in order.

See benchmarks/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
EVENT = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Upper bounds on every wait, in seconds.
CONNECT_LIMIT_BASE = 30.0
CONNECT_LIMIT_PER_CLIENT = 0.03
ROUND_LIMIT = 15.0
ROUND_PAUSE = 0.3
BURST_LIMIT = 120.0
BURST_STALL = 10.0
SETTLE_LIMIT = 30.0
HTTP_LIMIT = 30.0
SAMPLE_INTERVAL = 0.25
MAX_HEAD_BYTES = 65536


# -- load client ---------------------------------------------------------------


class Sink:
    """Receives parsed events from every client of a scenario."""

    def on_event(self, client: SSEClient, name: str, data: str, now: float) -> None:
        raise NotImplementedError

    def on_lost(self, client: SSEClient) -> None:
        pass


class SSEClient(asyncio.Protocol):
    """One SSE connection: a raw HTTP/1.1 GET, then chunked and SSE decoding.

    ``ready`` resolves when the first body bytes arrive (the server sends
    ``retry:`` and a comment as soon as the stream is subscribed)."""

    def __init__(self, request: bytes, sink: Sink) -> None:
        self.request = request
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.head_done = False
        self.chunked = False
        self.raw = bytearray()
        self.text = bytearray()
        self.chunk_left = 0
        self.need_crlf = False
        self.lost = False
        self.close_reason: str | None = None
        self.received: list[int] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(f"connection lost before the first chunk ({exc!r})")
        self.sink.on_lost(self)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.head_done:
            self.raw += data
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                if len(self.raw) > MAX_HEAD_BYTES:
                    self.close("response head too large")
                return
            self._parse_head(bytes(self.raw[:end]).decode("latin-1"))
            data = bytes(self.raw[end + 4 :])
            self.raw.clear()
            if self.status != 200:
                self.close(f"HTTP {self.status}")
                return
        body = self._dechunk(data) if self.chunked else data
        if not body:
            return
        if not self.ready.done():
            self.ready.set_result(None)
        text = self.text
        text += body
        start = 0
        while True:
            end = text.find(b"\n\n", start)
            if end < 0:
                break
            block = bytes(text[start:end])
            start = end + 2
            if block.startswith((b":", b"retry:")) and b"\nevent:" not in block:
                continue
            self._dispatch(block, now)
        if start:
            del text[:start]

    # helpers
    def close(self, why: str) -> None:
        self._fail(why)
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
            self.ready.exception()  # mark retrieved: open_clients reports it

    def _parse_head(self, head: str) -> None:
        self.head_done = True
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.raw
        buf += data
        out: list[bytes] = []
        for _ in range(len(buf) + 1):  # every pass consumes bytes or stops
            if not buf:
                break
            if self.need_crlf:
                if len(buf) < 2:
                    break
                del buf[:2]
                self.need_crlf = False
                continue
            if self.chunk_left == 0:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    break
                size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
                del buf[: eol + 2]
                if size == 0:
                    buf.clear()
                    break
                self.chunk_left = size
                continue
            take = min(self.chunk_left, len(buf))
            out.append(bytes(buf[:take]))
            del buf[:take]
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.need_crlf = True
        return b"".join(out)

    def _dispatch(self, block: bytes, now: float) -> None:
        name = "message"
        data: list[str] = []
        for line in block.decode("utf-8").split("\n"):
            field_name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field_name == "event":
                name = value
            elif field_name == "data":
                data.append(value)
        self.sink.on_event(self, name, "\n".join(data), now)


@dataclass
class Opened:
    clients: list[SSEClient]
    created: list[SSEClient]
    errors: list[str]
    seconds: float


async def open_clients(port: int, channel: str, count: int, sink: Sink, concurrency: int) -> Opened:
    """Open ``count`` streams, at most ``concurrency`` handshakes at a time."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /sse/?channel={channel} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    semaphore = asyncio.Semaphore(concurrency)
    limit = CONNECT_LIMIT_BASE + CONNECT_LIMIT_PER_CLIENT * count
    deadline = loop.time() + limit
    created: list[SSEClient] = []

    async def one() -> SSEClient:
        async with semaphore:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"not connected within {limit:.0f}s")
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: SSEClient(request, sink), HOST, port), remaining
            )
            created.append(proto)
            await asyncio.wait_for(proto.ready, max(deadline - loop.time(), 0.001))
            return proto

    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    except BaseException:
        close_clients(created)
        raise
    seconds = time.perf_counter() - started
    clients = [r for r in results if isinstance(r, SSEClient)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return Opened(clients, created, errors, seconds)


def close_clients(clients: list[SSEClient]) -> None:
    """Close every stream now: ``shutdown`` sends the FIN at once, even when the
    event loop is being torn down and ``close()`` would never get to run."""
    for client in clients:
        if client.transport is not None and not client.lost:
            sock = client.transport.get_extra_info("socket")
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            client.transport.close()


class FanoutSink(Sink):
    def __init__(self) -> None:
        self.round = -1
        self.expected = 0
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.closed = 0
        self.stray = 0

    def start_round(self, number: int, expected: int) -> None:
        self.round = number
        self.expected = expected
        self.latencies = []
        self.done.clear()

    def on_event(self, client: SSEClient, name: str, data: str, now: float) -> None:
        if name == EVENT:
            payload = json.loads(data)
            if payload.get("round") != self.round:
                self.stray += 1
                return
            self.latencies.append(now - payload["t"])
            if len(self.latencies) >= self.expected:
                self.done.set()
        elif name == "stream-closed":
            self.closed += 1
            client.close_reason = json.loads(data).get("reason")


class BurstSink(Sink):
    def __init__(self, events: int) -> None:
        self.events = events
        self.clients: list[SSEClient] = []
        self.finished = 0
        self.closing = False
        self.last = 0.0
        self.last_progress = time.monotonic()
        self.done = asyncio.Event()

    def _check(self) -> None:
        if self.clients and self.finished >= len(self.clients):
            self.done.set()

    def on_event(self, client: SSEClient, name: str, data: str, now: float) -> None:
        if name == EVENT:
            client.received.append(json.loads(data)["n"])
            self.last = now
            self.last_progress = time.monotonic()
            if len(client.received) == self.events:
                self.finished += 1
                self._check()
        elif name == "stream-closed":
            client.close_reason = json.loads(data).get("reason")
            self.finished += 1
            self._check()

    def on_lost(self, client: SSEClient) -> None:
        if self.closing or client.close_reason or len(client.received) >= self.events:
            return
        if client in self.clients:
            client.close_reason = "connection lost"
            self.finished += 1
            self._check()


# -- plain HTTP requests (stats, in-memory publishing) --------------------------


async def http_request(port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), HTTP_LIMIT)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        raw_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_LIMIT)
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if "content-length" in headers:
            payload = await asyncio.wait_for(
                reader.readexactly(int(headers["content-length"])), HTTP_LIMIT
            )
        else:
            payload = await asyncio.wait_for(reader.read(), HTTP_LIMIT)
            if "chunked" in headers.get("transfer-encoding", ""):
                payload = dechunk_all(payload)
    finally:
        writer.close()
    if status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {status}: {payload[:200]!r}")
    return payload


def dechunk_all(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    for _ in range(len(data) + 1):
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(data[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            break
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2
    return b"".join(out)


async def server_streams(port: int) -> int:
    return int(json.loads(await http_request(port, "GET", "/test/stats/")).get("streams", 0))


async def wait_streams(port: int, wanted: int, limit: float) -> int:
    """Poll the server's hub until it holds ``wanted`` streams (bounded)."""
    streams = -1
    for _ in range(max(1, int(limit / 0.1))):
        streams = await server_streams(port)
        if streams == wanted:
            break
        await asyncio.sleep(0.1)
    return streams


# -- publishing -----------------------------------------------------------------


class Publisher:
    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.port = 0

    async def one(self, channel: str, data: dict[str, Any]) -> None:
        if self.layer == "redis":
            from django_sse import asend_event

            await asend_event(channel, EVENT, data)
        else:
            body = {"channel": channel, "event": EVENT, "count": 1, "data": data}
            await http_request(self.port, "POST", "/test/publish/", json.dumps(body).encode())

    async def fanout(self, channel: str, number: int) -> None:
        await self.one(channel, {"t": time.time(), "round": number})

    async def burst(self, channel: str, count: int) -> None:
        if self.layer == "redis":
            from django_sse import asend_event

            for n in range(count):
                await asend_event(channel, EVENT, {"n": n, "t": time.time()})
        else:
            # The test view publishes {"n": i} for i in range(count), in the server.
            body = {"channel": channel, "event": EVENT, "count": count}
            await http_request(self.port, "POST", "/test/publish/", json.dumps(body).encode())


# -- measurements ---------------------------------------------------------------


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sampler:
    """Peak RSS and thread count of the server, sampled in the background."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_threads = 0

    def sample(self) -> dict[str, int]:
        status = proc_status(self.pid)
        self.peak_rss_kb = max(self.peak_rss_kb, status.get("VmRSS", 0))
        self.peak_threads = max(self.peak_threads, status.get("Threads", 0))
        return status

    async def run(self, limit: float) -> None:
        for _ in range(int(limit / SAMPLE_INTERVAL) + 1):
            self.sample()
            await asyncio.sleep(SAMPLE_INTERVAL)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- scenarios ------------------------------------------------------------------


@dataclass
class Context:
    server_kind: str
    layer: str
    env: dict[str, str]
    publisher: Publisher
    concurrency: int
    pin: bool
    results: list[dict[str, Any]] = field(default_factory=list)
    app: str = "tests.asgi:application"


@contextmanager
def server_for(ctx: Context) -> Iterator[Any]:
    from tests.servers import running_server

    with running_server(ctx.server_kind, app=ctx.app, **ctx.env) as server:
        if ctx.pin and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(server.proc.pid, {0})
            os.sched_setaffinity(0, {1})
        try:
            yield server
        except BaseException:
            tail = server.output()[-3000:]
            print(f"--- {ctx.server_kind} log (tail) ---\n{tail}", file=sys.stderr)
            raise


def log_problems(text: str) -> list[str]:
    keys = ("Traceback", "ERROR", "WARNING", "Exception")
    return [line for line in text.splitlines() if any(k in line for k in keys)][:20]


async def warm_up(ctx: Context, port: int) -> None:
    """Import the views, open the layer connections: nothing here is measured."""
    sink = FanoutSink()
    channel = f"news:warmup-{uuid.uuid4().hex[:8]}"
    opened = await open_clients(port, channel, 3, sink, 3)
    try:
        if opened.errors:
            raise RuntimeError(f"warm-up streams failed: {opened.errors[:3]}")
        await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
        sink.start_round(0, len(opened.clients))
        await ctx.publisher.fanout(channel, 0)
        try:
            await asyncio.wait_for(sink.done.wait(), ROUND_LIMIT)
        except TimeoutError:
            raise RuntimeError("warm-up event was not delivered") from None
    finally:
        close_clients(opened.created)
    await wait_streams(port, 0, SETTLE_LIMIT)


async def fanout(ctx: Context, clients: int, rounds: int) -> dict[str, Any]:
    with server_for(ctx) as server:
        port, pid = server.port, server.proc.pid
        ctx.publisher.port = port
        await warm_up(ctx, port)
        sampler = Sampler(pid)
        before = sampler.sample()
        cpu0, server_cpu0 = client_cpu(), proc_cpu(pid)
        sampling = asyncio.create_task(sampler.run(3600))
        channel = f"news:fanout-{clients}-{uuid.uuid4().hex[:8]}"
        sink = FanoutSink()
        opened = await open_clients(port, channel, clients, sink, ctx.concurrency)
        try:
            streams = await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
            await asyncio.sleep(0.2)
            connected = sampler.sample()
            connect_cpu = client_cpu() - cpu0
            latencies: list[float] = []
            per_round: list[dict[str, Any]] = []
            for number in range(rounds):
                expected = sum(1 for c in opened.clients if not c.lost)
                sink.start_round(number, expected)
                c0, w0, started_at = client_cpu(), time.perf_counter(), time.time()
                await ctx.publisher.fanout(channel, number)
                try:
                    await asyncio.wait_for(sink.done.wait(), ROUND_LIMIT)
                except TimeoutError:
                    pass
                wall = time.perf_counter() - w0
                busy = (client_cpu() - c0) / wall if wall > 0 else math.nan
                got = list(sink.latencies)
                latencies.extend(got)
                per_round.append(
                    {
                        "round": number,
                        "started_at": started_at,
                        "expected": expected,
                        "delivered": len(got),
                        "p50_ms": percentile(got, 50) * 1000,
                        "p95_ms": percentile(got, 95) * 1000,
                        "max_ms": max(got) * 1000 if got else math.nan,
                        "window_s": wall,
                        "client_busy": busy,
                    }
                )
                await asyncio.sleep(ROUND_PAUSE)
            peak = sampler.sample()
        finally:
            close_clients(opened.created)
            sampling.cancel()
        left = await wait_streams(port, 0, SETTLE_LIMIT)
        server_cpu = proc_cpu(pid) - server_cpu0
        rss_delta = connected.get("VmRSS", 0) - before.get("VmRSS", 0)
        n_open = len(opened.clients)
        return {
            "scenario": "fanout",
            "server": ctx.server_kind,
            "layer": ctx.layer,
            "clients": clients,
            "connected": n_open,
            "connect_errors": len(opened.errors),
            "first_connect_error": opened.errors[0] if opened.errors else None,
            "server_streams_seen": streams,
            "server_streams_after_close": left,
            "connect_s": opened.seconds,
            "connect_client_cpu_s": connect_cpu,
            "rounds": rounds,
            "expected": sum(r["expected"] for r in per_round),
            "delivered": len(latencies),
            "stray_events": sink.stray,
            "closed_by_server": sink.closed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else math.nan,
            "per_round": per_round,
            "client_cpu_s": client_cpu() - cpu0,
            "client_busy_max": max((r["client_busy"] for r in per_round), default=math.nan),
            "server_cpu_s": server_cpu,
            "server_rss_before_mb": before.get("VmRSS", 0) / 1024,
            "server_rss_connected_mb": connected.get("VmRSS", 0) / 1024,
            "server_rss_peak_mb": max(sampler.peak_rss_kb, peak.get("VmRSS", 0)) / 1024,
            "kb_per_stream": rss_delta / n_open if n_open else math.nan,
            "server_threads_before": before.get("Threads", 0),
            "server_threads_peak": sampler.peak_threads,
            "server_log_problems": log_problems(server.output()),
        }


async def burst(ctx: Context, subscribers: int, events: int) -> dict[str, Any]:
    with server_for(ctx) as server:
        port, pid = server.port, server.proc.pid
        ctx.publisher.port = port
        await warm_up(ctx, port)
        sampler = Sampler(pid)
        before = sampler.sample()
        cpu0, server_cpu0 = client_cpu(), proc_cpu(pid)
        sampling = asyncio.create_task(sampler.run(3600))
        channel = f"news:burst-{uuid.uuid4().hex[:8]}"
        sink = BurstSink(events)
        opened = await open_clients(port, channel, subscribers, sink, ctx.concurrency)
        sink.clients = opened.clients
        try:
            await wait_streams(port, len(opened.clients), SETTLE_LIMIT)
            await asyncio.sleep(0.2)
            sampler.sample()
            started_wall = time.time()
            started = time.perf_counter()
            c0 = client_cpu()
            await ctx.publisher.burst(channel, events)
            publish_s = time.perf_counter() - started
            deadline = time.monotonic() + BURST_LIMIT
            for _ in range(int(BURST_LIMIT / 0.1) + 1):
                if sink.done.is_set() or time.monotonic() > deadline:
                    break
                if time.monotonic() - sink.last_progress > BURST_STALL:
                    break
                try:
                    await asyncio.wait_for(sink.done.wait(), 0.1)
                except TimeoutError:
                    pass
            total_s = (sink.last - started_wall) if sink.last else math.nan
            delivery_cpu = client_cpu() - c0
            peak = sampler.sample()
        finally:
            sink.closing = True
            close_clients(opened.created)
            sampling.cancel()
        await wait_streams(port, 0, SETTLE_LIMIT)
        per_sub: list[dict[str, Any]] = []
        for index, client in enumerate(opened.clients):
            got = client.received
            per_sub.append(
                {
                    "subscriber": index,
                    "received": len(got),
                    "in_order": got == sorted(got) and len(set(got)) == len(got),
                    "complete": got == list(range(events)),
                    "closed_by_server": client.close_reason,
                }
            )
        return {
            "scenario": "burst",
            "server": ctx.server_kind,
            "layer": ctx.layer,
            "subscribers": subscribers,
            "connected": len(opened.clients),
            "connect_errors": len(opened.errors),
            "events": events,
            "complete_subscribers": sum(1 for s in per_sub if s["complete"]),
            "all_in_order": all(s["in_order"] for s in per_sub),
            "received_min": min((s["received"] for s in per_sub), default=0),
            "received_max": max((s["received"] for s in per_sub), default=0),
            "closed_by_server": sum(1 for s in per_sub if s["closed_by_server"]),
            "publish_s": publish_s,
            "total_s": total_s,
            "delivery_client_cpu_s": delivery_cpu,
            "client_cpu_s": client_cpu() - cpu0,
            "server_cpu_s": proc_cpu(pid) - server_cpu0,
            "server_rss_peak_mb": max(sampler.peak_rss_kb, peak.get("VmRSS", 0)) / 1024,
            "server_threads_before": before.get("Threads", 0),
            "server_threads_peak": sampler.peak_threads,
            "per_subscriber": per_sub,
            "server_log_problems": log_problems(server.output()),
        }


# -- report ---------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        f"django_sse fan-out benchmark: {meta['server']}, {meta['layer']} layer, "
        f"{meta['rounds']} rounds per size, {meta['cpus']} CPUs"
        f"{' (server and client pinned)' if meta['pin'] else ''}, "
        f"Python {meta['python']}, {meta['date']}",
        "",
    ]
    fan = [r for r in results if r["scenario"] == "fanout"]
    if fan:
        out += [
            "| clients | connected | connect s | delivered | p50 ms | p95 ms | p99 ms "
            "| max ms | client CPU s | client busy max | server CPU s | server RSS peak MB "
            "| KB/stream | threads before/peak |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fan:
            out.append(
                f"| {r['clients']} | {r['connected']} | {fmt(r['connect_s'])} "
                f"| {r['delivered']}/{r['expected']} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} "
                f"| {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {fmt(r['client_cpu_s'], 2)} "
                f"| {fmt(r['client_busy_max'] * 100, 0)}% | {fmt(r['server_cpu_s'], 2)} "
                f"| {fmt(r['server_rss_peak_mb'])} | {fmt(r['kb_per_stream'])} "
                f"| {r['server_threads_before']}/{r['server_threads_peak']} |"
            )
        out.append("")
    for r in (r for r in results if r["scenario"] == "burst"):
        out += [
            "| burst: subscribers | events | complete | in order | received min/max "
            "| closed by server | publish s | total s | client CPU s | server CPU s "
            "| server RSS peak MB | threads before/peak |",
            "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r['connected']}/{r['subscribers']} | {r['events']} "
            f"| {r['complete_subscribers']}/{r['connected']} "
            f"| {'yes' if r['all_in_order'] else 'NO'} "
            f"| {r['received_min']}/{r['received_max']} | {r['closed_by_server']} "
            f"| {fmt(r['publish_s'], 2)} | {fmt(r['total_s'], 2)} "
            f"| {fmt(r['client_cpu_s'], 2)} | {fmt(r['server_cpu_s'], 2)} "
            f"| {fmt(r['server_rss_peak_mb'])} "
            f"| {r['server_threads_before']}/{r['server_threads_peak']} |",
            "",
            "| subscriber | received | in order | closed by server |",
            "|---:|---:|---|---|",
        ]
        for s in r["per_subscriber"]:
            out.append(
                f"| {s['subscriber']} | {s['received']} | {'yes' if s['in_order'] else 'NO'} "
                f"| {s['closed_by_server'] or '-'} |"
            )
        out.append("")
    for r in results:
        if r.get("connect_errors"):
            label = r.get("clients", r.get("subscribers"))
            out.append(f"- {r['scenario']} {label}: {r['connect_errors']} connections failed")
        if r.get("server_log_problems"):
            label = r.get("clients", r.get("subscribers"))
            out.append(f"- {r['scenario']} {label}: server log: {r['server_log_problems'][:3]}")
    return "\n".join(out).rstrip() + "\n"


# -- setup ----------------------------------------------------------------------


def raise_nofile(clients: int) -> int:
    """Raise RLIMIT_NOFILE for this process; the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * clients + 1024
    ceiling = hard if hard != resource.RLIM_INFINITY else max(wanted, 65536)
    target = min(max(soft, wanted), ceiling)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        print(f"warning: open-file limit {target} < {wanted} needed", file=sys.stderr)
    return target


def redis_url(stack: ExitStack, layer: str) -> str:
    if layer != "redis":
        return ""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    from tests.servers import private_redis

    cm: AbstractContextManager[Any] = private_redis()
    return str(stack.enter_context(cm).url)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--layer", choices=("redis", "memory"), default="redis")
    parser.add_argument("--clients", default="100,1000,3000", help="fan-out sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="events per fan-out size")
    parser.add_argument("--burst-subscribers", type=int, default=20)
    parser.add_argument("--burst-events", type=int, default=1000)
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, client on CPU 1")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    args.client_counts = [int(x) for x in args.clients.split(",") if x.strip()]
    if any(k < 1 for k in args.client_counts) or args.rounds < 1:
        parser.error("--clients and --rounds must be positive")
    return args


def _finite(value: Any) -> Any:
    """NaN (nothing measured) becomes ``null``, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _terminate(signum: int, frame: Any) -> None:
    # Handled like Ctrl-C: streams closed, server stopped, partial results printed.
    raise KeyboardInterrupt(f"signal {signum}")


async def run(ctx: Context, args: argparse.Namespace) -> None:
    for clients in args.client_counts:
        print(f"fan-out: {clients} clients x {args.rounds} rounds ...", file=sys.stderr)
        result = await fanout(ctx, clients, args.rounds)
        ctx.results.append(result)
        print(
            f"  connected {result['connected']} in {result['connect_s']:.1f}s, "
            f"p50 {result['p50_ms']:.1f} / p95 {result['p95_ms']:.1f} / "
            f"p99 {result['p99_ms']:.1f} ms",
            file=sys.stderr,
        )
    if not args.no_burst:
        print(
            f"burst: {args.burst_events} events to {args.burst_subscribers} subscribers ...",
            file=sys.stderr,
        )
        ctx.results.append(await burst(ctx, args.burst_subscribers, args.burst_events))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    raise_nofile(max([*args.client_counts, args.burst_subscribers]))
    started = time.time()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        from tests.servers import migrate

        db = str(Path(tmp) / "bench.sqlite3")
        migrate(db)
        env = {"SSE_TEST_LAYER": args.layer, "SSE_TEST_DB": db}
        url = redis_url(stack, args.layer)
        if url:
            env["REDIS_URL"] = url
        # The publisher (this process) uses the same settings and layer as the server.
        os.environ.update(env, DJANGO_SETTINGS_MODULE="tests.settings")
        import django

        django.setup()
        ctx = Context(
            args.server,
            args.layer,
            env,
            Publisher(args.layer),
            args.connect_concurrency,
            args.pin,
        )
        failure: BaseException | None = None
        try:
            asyncio.run(run(ctx, args))
        except (Exception, KeyboardInterrupt) as exc:
            failure = exc
        meta = {
            "server": args.server,
            "layer": args.layer,
            "rounds": args.rounds,
            "pin": args.pin,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "seconds": round(time.time() - started, 1),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        print()
        print(markdown(ctx.results, meta))
        print(f"total {meta['seconds']}s", flush=True)
        if args.json:
            text = json.dumps(
                _finite({"meta": meta, "results": ctx.results}), indent=2, default=str
            )
            if args.json == "-":
                print(text)
            else:
                Path(args.json).write_text(text + "\n")
        if failure is not None:
            print(f"benchmark failed: {failure!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
