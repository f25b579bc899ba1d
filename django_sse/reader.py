"""An in-process stream reader for async tests: the fast path, no server.

::

    async with stream_reader("/sse/?channel=ticket:1", user=alice) as stream:
        await asend_event("ticket:1", "helpdesk.ticket.updated", {"status": "open"})
        event = await stream.next_event()
        assert event.json == {"status": "open"}

The request goes through :func:`django_sse.asgi.fast_path` (asgiref's
``ApplicationCommunicator``), so authentication, the channel checks, resume
and the wire format are the server's own. A ``user`` is logged in with a real
session, as ``Client.force_login`` does: the stream reads it on its own
database thread, so the test's data must be committed
(``django_db(transaction=True)``, ``TransactionTestCase``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asgiref.testing import ApplicationCommunicator

__all__ = ["ReceivedEvent", "StreamReader", "stream_reader"]

#: Seconds a reader waits for the response to start and for each event.
TIMEOUT = 5.0


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as a browser's ``EventSource`` would dispatch it."""

    event: str
    data: str
    id: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class StreamReader:
    """One open stream request; created by :func:`stream_reader`."""

    def __init__(self, communicator: ApplicationCommunicator) -> None:
        self._communicator = communicator
        self.status = 0
        self.headers: dict[str, str] = {}
        #: Every byte of the body so far.
        self.body = b""
        self.ended = False
        self._events: list[ReceivedEvent] = []
        self._read = 0  # how many of _events next_event() has returned
        self._parsed = 0  # how much of body is parsed into _events
        self._last_id = ""

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every event received so far, returned by :meth:`next_event` or not."""
        return list(self._events)

    async def _receive(self, timeout: float) -> None:
        if self.ended:
            raise AssertionError(f"the stream has ended; it sent:\n{self._shown()}")
        try:
            async with asyncio.timeout(timeout):
                message = await self._communicator.output_queue.get()
        except TimeoutError:
            if self._communicator.future.done():
                self._communicator.future.result()  # the application's error, if any
            raise
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.ended = not message.get("more_body", False)
            self._parse()

    def _parse(self) -> None:
        # As the HTML standard's event stream interpretation: blocks end with
        # a blank line; a block without data dispatches nothing.
        end = self.body.rfind(b"\n\n")
        if end < self._parsed:
            return
        for block in self.body[self._parsed : end].split(b"\n\n"):
            name, data, has_data = "message", [], False
            for line in block.decode("utf-8", errors="replace").split("\n"):
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                    has_data = True
                elif field == "id" and "\x00" not in value:
                    self._last_id = value
            if has_data:
                self._events.append(ReceivedEvent(name, "\n".join(data), self._last_id))
        self._parsed = end + 2

    async def start(self, timeout: float = TIMEOUT) -> None:
        while not self.status:
            await self._receive(timeout)
        if self.status == 200:
            while b"\n" not in self.body and not self.ended:
                await self._receive(timeout)  # the first comment: subscribed
        else:
            while not self.ended:
                await self._receive(timeout)

    async def next_event(
        self, timeout: float = TIMEOUT, *, name: str | None = None
    ) -> ReceivedEvent:
        """The next event not yet returned (with ``name``, the next one of that
        name: others before it are passed over, as a page that listens for one
        name would); ``TimeoutError`` after ``timeout`` seconds without one,
        ``AssertionError`` if the stream has ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._read == len(self._events):
                try:
                    await self._receive(max(deadline - loop.time(), 0.0))
                except TimeoutError:
                    wanted = f" named {name!r}" if name else ""
                    raise TimeoutError(
                        f"no event{wanted} within {timeout:g}s; the stream sent:\n{self._shown()}"
                    ) from None
            self._read += 1
            event = self._events[self._read - 1]
            if name is None or event.event == name:
                return event

    @property
    def reason(self) -> str:
        """The one-line reason of a refused request (400, 403, 404, 429)."""
        return self.body.decode("utf-8", errors="replace").strip()

    def _shown(self) -> str:
        return self.body.decode("utf-8", errors="replace")[-2000:] or "(nothing)"

    async def close(self) -> None:
        # asgiref's testing module is untyped.
        await self._communicator.send_input({"type": "http.disconnect"})  # type: ignore[no-untyped-call]
        await self._communicator.wait(TIMEOUT)  # type: ignore[no-untyped-call]


async def _session_cookie(user: Any) -> tuple[bytes, bytes]:
    from django.conf import settings
    from django.test import AsyncClient

    client = AsyncClient()
    await client.aforce_login(user)
    name = settings.SESSION_COOKIE_NAME
    return b"cookie", f"{name}={client.cookies[name].value}".encode()


def _default_application() -> Any:
    from django.core.asgi import get_asgi_application

    from .asgi import fast_path

    return fast_path(get_asgi_application())  # type: ignore[arg-type]


@asynccontextmanager
async def stream_reader(
    url: str,
    *,
    user: Any = None,
    headers: dict[str, str] | None = None,
    application: Any = None,
    timeout: float = TIMEOUT,
) -> AsyncIterator[StreamReader]:
    """Open ``url`` (``"/sse/?channel=a&channel=b"``) in-process, as ``user``
    if given, and yield the :class:`StreamReader` once the stream is
    subscribed (or refused: see ``status`` and ``reason``). Disconnects at the
    end of the block. ``application`` defaults to Django's ASGI application
    behind the fast path; pass the project's own to test its routing."""
    parts = urlsplit(url)
    raw_headers = [(b"host", b"testserver"), (b"accept", b"text/event-stream")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if user is not None:
        raw_headers.append(await _session_cookie(user))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    app = application or _default_application()
    communicator = ApplicationCommunicator(app, scope)  # type: ignore[no-untyped-call]
    reader = StreamReader(communicator)
    request = {"type": "http.request", "body": b"", "more_body": False}
    await communicator.send_input(request)  # type: ignore[no-untyped-call]
    try:
        await reader.start(timeout)
        yield reader
    finally:
        await reader.close()
