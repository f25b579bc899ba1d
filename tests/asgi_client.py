"""Drive Django's ASGI application in-process, keeping a stream open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.core.asgi import get_asgi_application
from httpx_sse._decoders import SSEDecoder


class ASGIStream:
    """Drive one GET through the ASGI app, keeping the stream open."""

    def __init__(
        self, path: str, query: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"accept-encoding", b"gzip"), *(headers or [])],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        self.disconnect = asyncio.Event()
        self.start: dict[str, Any] | None = None
        self.body = b""
        self.chunk = asyncio.Event()
        self.reading = asyncio.Event()  # cleared: the client stops reading
        self.reading.set()

    async def receive(self) -> dict[str, Any]:
        if not hasattr(self, "_sent_request"):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.reading.wait()
        if message["type"] == "http.response.start":
            self.start = message
        else:
            self.body += message.get("body", b"")
            self.chunk.set()

    async def wait_for(self, needle: bytes, timeout: float = 5) -> None:
        while needle not in self.body:
            self.chunk.clear()
            await asyncio.wait_for(self.chunk.wait(), timeout)

    def events(self) -> list[dict[str, Any]]:
        """The events received so far, parsed by a real SSE decoder."""
        decoder = SSEDecoder()
        out = []
        complete = self.body[: self.body.rfind(b"\n\n") + 2] if b"\n\n" in self.body else b""
        for line in complete.decode().split("\n")[:-1]:
            sse = decoder.decode(line)
            if sse is not None and (sse.data or sse.event != "message"):
                out.append({"id": sse.id, "event": sse.event, "data": sse.data})
        return out

    async def wait_events(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """Wait until ``count`` events have arrived; return them all."""
        async with asyncio.timeout(timeout):
            while len(self.events()) < count:
                self.chunk.clear()
                await self.chunk.wait()
        return self.events()


@asynccontextmanager
async def asgi_stream(
    query: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ASGIStream]:
    """An open stream on ``/sse/?<query>``, after its first chunk arrived."""
    app = get_asgi_application()
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    stream = ASGIStream("/sse/", query, raw)
    task = asyncio.create_task(app(stream.scope, stream.receive, stream.send))
    try:
        await stream.wait_for(b": connected\n")
        yield stream
    finally:
        stream.disconnect.set()
        await asyncio.wait_for(task, 5)
