"""An SSE client over a raw asyncio socket that resumes the way a browser does.

It reconnects after a drop, a refused connection or ``stream-closed`` with
``"reconnect": true``, sending ``Last-Event-ID`` (the last id it parsed, as
EventSource does), after the server's ``retry:`` delay with jitter. It treats
``stream-reset`` as a reload: the reset's position is where it stands now, and
what lies before it is explained, not lost. It records every event with the
sequence number its ``id:`` gives the event's channel, so the test can check the
sequence against the store.

No Django here: it runs in the load-client processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django_sse.ids import decode_position

#: Seconds to connect and to read the response head.
CONNECT_TIMEOUT = 10.0
#: Upper bound of the reconnection delay (the server's ``retry:`` is used below it).
RETRY_CAP = 2.0
#: Bytes asyncio buffers before it stops reading the socket: small, so a
#: stalled client pushes back on the server at once.
READ_LIMIT = 16384


@dataclass
class Record:
    """What one client saw, in arrival order."""

    channels: tuple[str, ...]  # sorted, as the ids encode them
    #: ``["e", channel, seq, tag, n]`` per event, ``["reset", reason, positions]`` per reset.
    timeline: list[list[Any]] = field(default_factory=list)
    closes: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    connects: int = 0
    reconnects: int = 0
    refused: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "timeline": self.timeline,
            "closes": self.closes,
            "statuses": self.statuses,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "refused": self.refused,
        }


class SSEClient:
    def __init__(
        self,
        port: int,
        channels: list[str],
        *,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        self.port = port
        self.channels = tuple(sorted(channels))
        self.headers = headers or {}
        self.rcvbuf = rcvbuf
        self.record = Record(self.channels)
        self.last_id = ""
        self.retry = 3.0
        self.positions = dict.fromkeys(self.channels, 0)
        self.open = asyncio.Event()  # a 200 head and the first bytes arrived
        self.reading = asyncio.Event()  # cleared: stop reading (a stalled reader)
        self.reading.set()
        self.connected = asyncio.Event()  # cleared: hang up and stay away
        self.connected.set()
        self.stopped = False
        self.streaming = False  # inside a 200 response body
        self._writer: asyncio.StreamWriter | None = None

    # -- what the client saw ------------------------------------------------

    def caught_up(self, heads: dict[str, int]) -> bool:
        return all(self.positions[c] >= heads.get(c, 0) for c in self.channels)

    def _event(self, name: str, data: str, event_id: str) -> None:
        if name == "stream-reset":
            moved = decode_position(event_id, self.channels) if event_id else None
            reason = _json(data).get("reason", "")
            self.record.timeline.append(["reset", reason, moved])
            if moved:
                self.positions = moved
            return
        if name == "stream-closed":
            payload = _json(data)
            reason = str(payload.get("reason"))
            self.record.closes[reason] = self.record.closes.get(reason, 0) + 1
            if payload.get("reconnect") is False:
                self.stopped = True
            return
        payload = _json(data)
        channel = payload.get("channel")
        moved = decode_position(event_id, self.channels) if event_id else None
        seq = moved.get(channel, -1) if moved and channel in self.channels else -1
        self.record.timeline.append(["e", channel, seq, payload.get("tag"), payload.get("n")])
        if moved:
            self.positions = {c: max(self.positions[c], moved[c]) for c in self.channels}

    # -- the connection loop ---------------------------------------------------

    async def run(self) -> None:
        first = True
        while not self.stopped:
            await self.connected.wait()
            if not first:
                self.record.reconnects += 1
            first = False
            try:
                await self._connect_once()
            except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            if self.stopped:
                return
            # The browser waits ``retry`` ms; jitter spreads a crowd that lost one server.
            await asyncio.sleep(min(self.retry, RETRY_CAP) * random.uniform(0.5, 1.5))

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, ("127.0.0.1", self.port)), CONNECT_TIMEOUT
            )
        except BaseException:
            sock.close()
            self.record.refused += 1
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=READ_LIMIT)
        self._writer = writer
        query = urlencode([("channel", c) for c in self.channels])
        lines = [
            f"GET /sse/?{query} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        if self.last_id:
            lines.append(f"Last-Event-ID: {self.last_id}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = status_line.split()[1]
        self.record.statuses[status] = self.record.statuses.get(status, 0) + 1
        if status != "200":
            return
        self.record.connects += 1
        chunked = any(
            h.lower().startswith("transfer-encoding:") and "chunked" in h.lower()
            for h in header_lines
        )
        self.streaming = True
        try:
            await self._read_body(reader, chunked)
        finally:
            self.streaming = False

    async def _read_body(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        parser = Parser(self)
        while True:
            if not self.reading.is_set():
                await self.reading.wait()
            if not self.connected.is_set():
                return
            if chunked:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            parser.feed(data)
            # The server's first bytes (``retry:`` and ``: connected``) are lines
            # without a blank line after them: open once any line has arrived.
            if parser.lines:
                self.open.set()
            if self.stopped:
                return

    def stop(self) -> None:
        """Hang up for good."""
        self.stopped = True
        self.connected.set()
        self.reading.set()
        if self._writer is not None:
            self._writer.close()

    def hang_up(self) -> None:
        """Close the connection now and stay away until ``connected`` is set again."""
        self.connected.clear()
        if self._writer is not None:
            self._writer.close()


class Parser:
    """The SSE parsing of the HTML standard, dispatching to the client."""

    def __init__(self, client: SSEClient) -> None:
        self.client = client
        self.buffer = b""
        self.data: list[str] = []
        self.name = ""
        self.id_buffer = client.last_id
        self.blocks = 0
        self.lines = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        # LF, CR or CRLF end a line; the server writes LF only.
        *lines, self.buffer = self.buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for raw in lines:
            self.line(raw.decode("utf-8", errors="replace"))

    def line(self, line: str) -> None:
        self.lines += 1
        if not line:
            self.dispatch()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.name = value
        elif name == "id" and "\0" not in value:
            self.id_buffer = value
        elif name == "retry" and value.isdigit():
            self.client.retry = int(value) / 1000

    def dispatch(self) -> None:
        self.blocks += 1
        client = self.client
        # The last event id is set even by a block without data.
        client.last_id = self.id_buffer
        data, name = self.data, self.name or "message"
        self.data, self.name = [], ""
        if data:
            client._event(name, "\n".join(data), self.id_buffer)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def open_all(
    clients: list[SSEClient], timeout: float
) -> tuple[list[asyncio.Task[None]], int]:
    """Start every client, a few at a time; return the tasks and how many opened."""
    tasks: list[asyncio.Task[None]] = []
    deadline = time.monotonic() + timeout
    batch = 50
    for start in range(0, len(clients), batch):
        group = clients[start : start + batch]
        tasks += [asyncio.create_task(c.run()) for c in group]
        remaining = max(deadline - time.monotonic(), 0.01)
        waiters = [asyncio.create_task(c.open.wait()) for c in group]
        await asyncio.wait(waiters, timeout=remaining)
        for waiter in waiters:
            waiter.cancel()
    return tasks, sum(c.open.is_set() for c in clients)
