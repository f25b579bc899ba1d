"""Writing a live stream's events from the hub, without waking its task.

A stream served by the ASGI fast path waits in ``Subscription.wait()`` between
events. Waking its task for each event, to hand the bytes through the stream's
generators to the server's ``send``, costs several times what writing them
does. So while the stream is parked (live, nothing queued, not reading the
store), the hub frames the event with the stream's own cursor and calls the
server's ``send`` itself, running the coroutine's first step right away, as
Python 3.12's eager tasks do. ``send`` returns without suspending unless the
client reads too slowly (the server's flow control); then the rest of that
send runs as a task, and every later event waits in the stream's queue, which
the stream's task writes after it, in order. Everything else (replay, holes,
keepalives, closing events) is written by the stream's task, as before.

Only the servers whose ``send`` is known not to depend on running in the
stream's own task get direct writes (:func:`supports`): uvicorn and daphne.
Under any other server, or a middleware that wraps ``send``, every event goes
through the stream's task.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event
    from .stream import StreamState

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Where the ``send`` of a server that may be driven from the hub is defined.
_SERVERS = ("uvicorn.protocols.http.", "daphne.server")


def supports(send: Any) -> bool:
    """Whether ``send`` is a server's own (uvicorn's, daphne's), not a wrapper."""
    func = send.func if isinstance(send, functools.partial) else send
    owner = getattr(func, "__self__", None)
    module = type(owner).__module__ if owner is not None else ""
    return module.startswith(_SERVERS)


class _Rest:
    """Awaitable: the rest of a coroutine whose first step already ran and
    yielded ``first``, driven by the task that awaits this (as ``await``
    would have, had it started there)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the task: a cancel
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


async def _finish(rest: _Rest) -> None:
    await rest


class DirectWriter:
    """The fast path's writer of one stream: the stream's task writes through
    :meth:`write`; once the stream is live, the hub writes through
    :meth:`offer`, and the two never interleave."""

    __slots__ = ("_loop", "_send", "error", "inflight", "state", "task")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._loop = asyncio.get_running_loop()
        self.state: StreamState | None = None
        #: The rest of a send that had to wait for the client (flow control).
        self.inflight: asyncio.Task[None] | None = None
        #: Why a direct write failed; the stream then ends.
        self.error: BaseException | None = None
        #: The task writing the stream, cancelled when a direct write fails.
        self.task: asyncio.Task[Any] | None = None

    def attach(self, state: StreamState) -> None:
        """Let the hub write ``state``'s events from now on (the stream is live)."""
        self.state = state
        state.direct = self
        state.sub.direct = self.offer

    async def settled(self) -> None:
        """Wait for a direct write still in flight (the stream's task, before
        it reads what was queued meanwhile)."""
        inflight = self.inflight
        if inflight is not None:
            await asyncio.shield(inflight)

    async def write(self, body: bytes) -> None:
        """Write ``body`` for the stream's task, after any direct write still
        in flight."""
        await self.settled()
        if self.error is not None:
            raise self.error
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    def offer(self, event: Event) -> bool:
        """Write ``event`` now, if it follows what was written; ``False``: the
        stream's task must (a send still in flight, a hole to read first)."""
        state = self.state
        if self.inflight is not None or self.error is not None or state is None:
            return False
        frame = state.frame(event)
        if frame is None:
            return False
        if frame:
            self._start(frame)
            sub = state.sub
            sub.last_write = self._loop.time()  # sub.wrote(), inlined
            sub.keepalive_due = False
        return True

    def _start(self, body: bytes) -> None:
        coro = self._send({"type": "http.response.body", "body": body, "more_body": True})
        try:
            first = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # written: the common case
        except (Exception, asyncio.CancelledError) as exc:
            # Raised in the hub's delivery loop: it must reach no other stream
            # nor the publisher (a send cancelled by its server ends it too).
            self._failed(exc)
            return
        task = self._loop.create_task(_finish(_Rest(coro, first)))  # type: ignore[arg-type]
        self.inflight = task
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.inflight = None
        # Cancelled by anyone but :meth:`cancel`, the send's bytes may not have
        # been written: the stream cannot go on as if they were.
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if exc is not None:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        # Raised again at the stream's next write, and logged by the door; the
        # stream's task is cancelled so that it ends now, not at that write.
        self.error = exc
        if self.state is not None:
            self.state.sub.direct = None
        if self.task is not None:
            self.task.cancel()

    def cancel(self) -> list[asyncio.Task[None]]:
        """Stop a send in flight (the stream ends); returns it, to be awaited."""
        inflight = self.inflight
        if inflight is None:
            return []
        self.inflight = None
        inflight.remove_done_callback(self._finished)
        inflight.cancel()
        return [inflight]
