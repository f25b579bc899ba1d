"""What a page does with presence events, for the tests: apply the
``presence`` snapshot and the ``presence.join``/``presence.leave`` events by
their versions (as django-sse.js does), and read streams cheaply."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.sse_client import Stream, wait_until


@dataclass
class PresenceView:
    """One page's member list of one channel."""

    members: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    version: int = 0
    snapshots: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def apply(self, name: str, data: dict[str, Any]) -> None:
        if name == "presence":
            self.snapshots += 1
            self.version = data["version"]
            self.members = {m["key"]: m["member"] for m in data["members"]}
            self.versions = {}
            self.counts = {k: data[k] for k in ("users", "streams", "anonymous")}
            return
        key, version = data["key"], data["version"]
        if version <= max(self.version, self.versions.get(key, 0)):
            return  # older than what this page knows
        self.versions[key] = version
        if name == "presence.join":
            self.members[key] = data["member"]
        else:
            self.members.pop(key, None)

    @property
    def names(self) -> set[str]:
        return {m.get("name", "") for m in self.members.values()}


async def follow(stream: Stream, view: PresenceView) -> None:
    """Apply ``stream``'s presence events to ``view`` until cancelled."""
    while True:
        event = await stream.next_event(timeout=3600)
        if event.event.startswith("presence"):
            view.apply(event.event, json.loads(event.data))


@asynccontextmanager
async def following(*streams: Stream) -> AsyncIterator[list[PresenceView]]:
    """One view per stream, kept up to date while the block runs."""
    views = [PresenceView() for _ in streams]
    tasks = [asyncio.create_task(follow(s, v)) for s, v in zip(streams, views, strict=True)]
    try:
        yield views
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(predicate: Any, timeout: float, what: str) -> float:
    """:func:`~tests.sse_client.wait_until` that names what it waited for and
    returns the seconds it took."""
    start = time.monotonic()
    try:
        await wait_until(predicate, timeout)
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {timeout}s") from None
    return time.monotonic() - start


_BLOCK = re.compile(rb"event: (presence[.a-z]*)\ndata: ([^\n]*)\n")


class RawReader:
    """A stream read over a bare socket: a thousand of these cost little."""

    def __init__(
        self, host: str, port: int, path: str, cookie: str = "", *, parse: bool = True
    ) -> None:
        self.host, self.port, self.path, self.cookie = host, port, path, cookie
        #: Without parsing, the reader only drains (a benchmark's many extra streams).
        self.parse = parse
        self.view = PresenceView()
        self.status = 0
        self._buffer = b""
        self.task: asyncio.Task[None] | None = None
        self.opened = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        cookie = f"Cookie: {self.cookie}\r\n" if self.cookie else ""
        writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Accept: text/event-stream\r\n{cookie}\r\n".encode()
        )
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.status = int(head.split()[1])
            self.opened.set()
            if b"transfer-encoding: chunked" not in head.lower():
                while chunk := await reader.read(65536):
                    self._feed(chunk)
                return
            while True:  # HTTP/1.1 chunked framing: "<hex size>\r\n<data>\r\n"
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                self._feed(await reader.readexactly(size))
                await reader.readexactly(2)
        finally:
            writer.close()

    def _feed(self, chunk: bytes) -> None:
        if not self.parse:
            return
        # A block is parsed only once its blank line has arrived.
        self._buffer += chunk
        end = self._buffer.rfind(b"\n\n")
        if end == -1:
            return
        done, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
        for name, data in _BLOCK.findall(done):
            self.view.apply(name.decode(), json.loads(data))

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
