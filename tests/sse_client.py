"""A small SSE test client over httpx, parsing with httpx-sse."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

_unique = itertools.count()

DEFAULT_TIMEOUT = 15.0


def unique(prefix: str = "c") -> str:
    """A channel suffix no other test uses."""
    return f"{prefix}{time.monotonic_ns():x}{next(_unique)}"


@dataclass
class Stream:
    response: httpx.Response
    events: list[ServerSentEvent] = field(default_factory=list)
    hello: str = ""
    _iter: AsyncIterator[ServerSentEvent] | None = None

    async def next_event(self, timeout: float = DEFAULT_TIMEOUT) -> ServerSentEvent:
        assert self._iter is not None
        event = await asyncio.wait_for(anext(self._iter), timeout)
        self.events.append(event)
        return event

    async def collect(
        self,
        count: int,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[ServerSentEvent]:
        """The next ``count`` events (named ``name`` if given), within ``timeout``."""
        got: list[ServerSentEvent] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(got)} of {count} events: {got[-3:]}")
            event = await self.next_event(remaining)
            if is_data_event(event) and (name is None or event.event == name):
                got.append(event)
        return got


def is_data_event(event: ServerSentEvent) -> bool:
    # httpx-sse reports a block without data (ended by a blank line) as an empty
    # message; the server sends none, but a test may read a foreign stream.
    return event.data != "" or event.event != "message"


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, *, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    """Open an SSE stream and wait for its first chunk (the server's hello)."""
    async with client.stream(
        "GET", url, headers={"Accept": "text/event-stream", **(headers or {})}
    ) as response:
        stream = Stream(response)
        if response.status_code == 200:
            chunks = response.aiter_text()
            # The first chunk (``retry:`` and a comment, no event) proves the subscription.
            first = await asyncio.wait_for(anext(chunks), DEFAULT_TIMEOUT)
            assert first.startswith("retry: "), first
            stream.hello = first
            stream._iter = _decode(first, chunks)
        yield stream


async def _decode(first: str, chunks: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """httpx-sse's own parsing (as ``EventSource.aiter_sse``), of ``first`` then ``chunks``."""
    lines = SSELineDecoder()
    decoder = SSEDecoder()

    async def texts() -> AsyncIterator[str]:
        yield first
        async for text in chunks:
            yield text

    async for text in texts():
        for line in lines.decode(text):
            sse = decoder.decode(line)
            if sse is not None:
                yield sse
    for line in lines.flush():
        sse = decoder.decode(line)
        if sse is not None:
            yield sse


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def login(client: httpx.AsyncClient, base: str, username: str, **params: Any) -> int:
    response = await client.get(f"{base}/test/login/", params={"username": username, **params})
    response.raise_for_status()
    return int(response.json()["pk"])


async def publish(
    client: httpx.AsyncClient, base: str, channel: str, *, count: int = 1, **body: Any
) -> None:
    response = await client.post(
        f"{base}/test/publish/", json={"channel": channel, "count": count, **body}
    )
    response.raise_for_status()
