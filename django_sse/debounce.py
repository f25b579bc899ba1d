"""Debounce windows: a burst of marks on a channel becomes one event.

Refresh hooks (:mod:`django_sse.refresh`) mark a channel when a transaction
that changed its rows commits. The first mark on a channel opens a window of
``SSE_REFRESH_DEBOUNCE`` seconds (or the hook's own), and when it ends one
event goes out for every mark made meanwhile: a bulk edit of 1,000 rows is one
event per channel. Clients then refetch what the channel shows, once.

Windows are kept per process, by a daemon thread. Pending events are sent at
once at interpreter exit (``atexit``) and when the server shuts down
(:func:`django_sse.shutdown.close_streams`); a process killed outright
(``kill -9``) loses the events of its open windows, one window at most.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from .conf import conf

logger = logging.getLogger("django_sse")


@dataclass
class _Window:
    event: str
    data: Any
    due: float
    changes: int = field(default=1)


class Debouncer:
    """The open windows of this process, and the thread that closes them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sending = threading.Lock()  # held while a batch is being sent
        self._in_flight = 0

    def mark(self, channel: str, event: str, data: Any, delay: float) -> None:
        """Note one change on ``channel``: send ``event`` when its window ends."""
        with self._wake:
            window = self._windows.get((channel, event))
            if window is not None:
                window.changes += 1
                return
            self._windows[(channel, event)] = _Window(event, data, time.monotonic() + delay)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="django_sse-debounce", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def pending(self) -> int:
        """Windows open or being sent."""
        with self._wake:
            return len(self._windows) + self._in_flight

    def _send_due(self, every: bool, deadline: float | None = None, *, heal: bool = False) -> int:
        """Send the windows that are due (``every``: all of them), after any
        batch being sent already (so that a flush at exit waits for the thread's
        batch instead of leaving it to die with the process); returns how many."""
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self._sending.acquire(timeout=wait):
            logger.warning("Refresh events were not sent: the previous batch is still sending")
            return 0
        try:
            with self._wake:
                now = time.monotonic()  # after the wait: what came due meanwhile goes too
                keys = [k for k, w in self._windows.items() if every or w.due <= now]
                due = [(key[0], self._windows.pop(key)) for key in keys]
                self._in_flight = len(due)
            if due:
                _send(due, deadline, heal=heal)
            return len(due)
        finally:
            with self._wake:
                self._in_flight = 0
            self._sending.release()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._windows:
                    self._wake.wait()
                first = min(w.due for w in self._windows.values())
                self._wake.wait(max(first - time.monotonic(), 0.0))
            try:
                if self._send_due(False, heal=True):
                    # This thread lives as long as the process: it keeps no connection.
                    connections.close_all()
            except Exception:
                # Keep the thread: the windows that open later must still close.
                logger.exception("Refresh events: sending a batch failed")

    def flush(self, deadline: float | None = None) -> int:
        """Send every open window's event now (until ``deadline``); returns how many."""
        return self._send_due(True, deadline)


def _send(
    due: list[tuple[str, _Window]], deadline: float | None = None, *, heal: bool = False
) -> None:
    """Publish the windows' events, one after the other (each layer call is
    bounded by ``SSE_PUBLISH_TIMEOUT``); stop at ``deadline`` if given. With
    ``heal`` (this thread's connections are its own), a connection the database
    dropped is replaced and the event sent once more: a refresh sent twice
    costs a refetch, one never sent a stale page."""
    from .publish import send_event

    for n, (channel, window) in enumerate(due):
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("%d refresh event(s) were not sent: out of time", len(due) - n)
            return
        try:
            try:
                send_event(channel, window.event, window.data)
            except (InterfaceError, OperationalError):
                if not heal:
                    raise
                connections.close_all()
                send_event(channel, window.event, window.data)
        except Exception:
            logger.exception(
                "Refresh event %r on channel %r (%d change(s)) was not sent",
                window.event,
                channel,
                window.changes,
            )


_lock = threading.Lock()
_debouncer: Debouncer | None = None


def debouncer() -> Debouncer:
    global _debouncer
    with _lock:
        # A forked worker inherits the object but not its thread.
        if _debouncer is None or _debouncer.pid != os.getpid():
            if _debouncer is None:
                atexit.register(_at_exit)
            _debouncer = Debouncer()
        return _debouncer


def flush(timeout: float | None = None) -> int:
    """Send the pending refresh events of this process now, for up to
    ``timeout`` seconds if given; returns how many were due."""
    current = _debouncer
    if current is None or current.pid != os.getpid():
        return 0
    return current.flush(None if timeout is None else time.monotonic() + timeout)


def _at_exit() -> None:
    flush(conf.SSE_PUBLISH_TIMEOUT + 1.0)


def _flush_then_close(timeout: float | None = None) -> None:
    flush(timeout)
    connections.close_all()  # a thread of its own or of the loop's executor


def flush_here() -> None:
    """:func:`flush` from any code: in a thread of its own when this thread runs
    an event loop (``send_event`` may not run there), waiting for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    if _debouncer is None or not _debouncer.pending():
        return
    worker = threading.Thread(target=_flush_then_close, name="django_sse-flush")
    worker.start()
    worker.join()


async def aflush(timeout: float) -> None:
    """:func:`flush` from async code (the server's shutdown), within ``timeout``."""
    if _debouncer is None or not _debouncer.pending():
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(_flush_then_close, timeout), timeout + 1.0)
    except TimeoutError:
        logger.warning("Shutdown: refresh events still being sent after %gs", timeout)
