"""The load client: one ``asyncio.Protocol`` per stream, a hand-written HTTP/1.1
GET and an incremental chunked + SSE parser (a few KB per connection; httpx per
connection is too heavy at thousands), plus the plain HTTP requests of the
scenarios (stats, publishing from inside a server)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from contextlib import suppress
from dataclasses import dataclass

HOST = "127.0.0.1"
EVENT = "bench"
#: Upper bounds on every wait, in seconds.
CONNECT_LIMIT_BASE = 30.0
CONNECT_LIMIT_PER_CLIENT = 0.03
HTTP_LIMIT = 30.0
MAX_HEAD_BYTES = 65536


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
