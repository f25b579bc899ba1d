"""A stream's opening and closing: counted in the metrics, sent as signals.

``stream_opened`` and ``stream_closed`` (:mod:`django_sse.signals`) are sent
only when a receiver is connected, so unused they cost one
``has_listeners()`` per stream. Receivers are the application's sync code (an
audit row, a webhook): they run with ``send_robust`` on the threads that run
the application's code for streams, never on the event loop, so a slow
receiver delays no stream, and one that raises is logged by Django and breaks
nothing. A stream's ``stream_closed`` is sent after its ``stream_opened``.
Those threads are daemon threads: a receiver stuck on a slow host does not
keep a stopped server's process alive (the sends still waiting are lost).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from django.db import connections
from django.dispatch import Signal

from . import dbthreads, metrics
from .conf import conf
from .signals import stream_closed, stream_opened

logger = logging.getLogger("django_sse")

#: Seconds a shutdown waits for the signals of the streams it closed.
FLUSH_TIMEOUT = 1.0
#: Signal sends waiting at most (receivers slower than streams come and go).
MAX_PENDING = 10_000
#: Seconds between two warnings about dropped signals.
WARN_EVERY = 60.0

#: Signal deliveries in flight (held here: the loop keeps only weak references).
_pending: set[asyncio.Task[None]] = set()
_dropped = {"count": 0, "warned": -WARN_EVERY}


class Senders:
    """``size`` daemon threads that run the receivers, one shared queue.

    Not a ``ThreadPoolExecutor``: Python joins its threads at exit, so a
    receiver that waits a minute on a webhook would hold a stopped server's
    process for that minute (and for every send queued behind it). A thread
    closes its database connections whenever no send waits, so that none
    outlives the receiver that opened it."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        for i in range(size):
            thread = threading.Thread(
                target=self._work, name=f"django_sse-signals-{i}", daemon=True
            )
            thread.start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.put((call, future))
        return future

    def _work(self) -> None:
        while True:
            call, future = self.queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(dbthreads._run(call, (), False))
                except BaseException as exc:
                    future.set_exception(exc)
            if self.queue.empty():
                connections.close_all()


_senders: Senders | None = None
_senders_lock = threading.Lock()


def senders() -> Senders:
    """This process's :class:`Senders` (a forked worker makes its own)."""
    global _senders
    with _senders_lock:
        if _senders is None or _senders.pid != os.getpid():
            _senders = Senders(conf.SSE_STORE_THREADS)
        return _senders


class Track:
    """What the closing of one stream needs to know about its opening."""

    __slots__ = ("channels", "door", "opened", "started", "user")

    def __init__(self, user: Any, channels: tuple[str, ...], door: str) -> None:
        self.user = user
        self.channels = channels
        self.door = door
        self.started = time.monotonic()
        self.opened: asyncio.Task[None] | None = None


def opened(user: Any, channels: tuple[str, ...], door: str, listening: int) -> Track:
    """Count a stream that is subscribed; ``listening``: the hub's channels.

    Never raises: the stream core calls it between its subscribe and the
    ``finally`` that unsubscribes."""
    track = Track(user, channels, door)
    try:
        metrics.get().stream_opened(door, listening)
        if stream_opened.has_listeners():
            track.opened = _send(stream_opened, None, user=user, channels=channels, door=door)
    except Exception:
        logger.exception("Counting an opened stream failed")
    return track


def closed(track: Track, reason: str | None, listening: int) -> None:
    """Count the end of ``track``'s stream; ``reason`` ``None``: its client went.

    Never raises: it runs in the stream's ``finally``, before the stream's
    slot is released."""
    try:
        _closed(track, reason or metrics.CLIENT_GONE, listening)
    except Exception:
        logger.exception("Counting a closed stream failed")


def _closed(track: Track, reason: str, listening: int) -> None:
    duration = time.monotonic() - track.started
    metrics.get().stream_closed(track.door, reason, duration, listening)
    if stream_closed.has_listeners():
        _send(
            stream_closed,
            track.opened,
            user=track.user,
            channels=track.channels,
            door=track.door,
            reason=reason,
            duration=duration,
        )


def _send(
    signal: Signal, after: asyncio.Task[None] | None, **kwargs: Any
) -> asyncio.Task[None] | None:
    loop = asyncio.get_running_loop()
    if len(_pending) >= MAX_PENDING:
        _dropped["count"] += 1
        if loop.time() - _dropped["warned"] >= WARN_EVERY:
            _dropped["warned"] = loop.time()
            logger.warning(
                "%d stream lifecycle signals dropped: %d sends wait for slow receivers",
                _dropped["count"],
                len(_pending),
            )
        return None
    task = loop.create_task(_deliver(signal, after, kwargs))
    _pending.add(task)
    task.add_done_callback(_done)
    return task


async def _deliver(
    signal: Signal, after: asyncio.Task[None] | None, kwargs: dict[str, Any]
) -> None:
    from .stream import event_stream

    if after is not None and not after.done():
        await asyncio.wait([after])
    # send_robust logs a receiver that raises (logger "django.dispatch").
    send = partial(signal.send_robust, sender=event_stream, **kwargs)
    await asyncio.wrap_future(senders().submit(send))


def _done(task: asyncio.Task[None]) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("Sending a stream lifecycle signal failed", exc_info=task.exception())


async def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Wait (up to ``timeout``) for this loop's signals in flight: a shutdown
    sends the ``stream_closed`` of the streams it closed before it ends."""
    loop = asyncio.get_running_loop()
    waiting = [t for t in _pending if t.get_loop() is loop]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
