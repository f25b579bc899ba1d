"""Debounced refresh events: a burst of changes on a channel becomes one event.

A refresh hook (``hooks.register(Ticket, channels="tickets", refresh=True)``)
does not send one event per save. Each committed save marks its channels;
the first mark on a channel opens a window of ``SSE_REFRESH_DEBOUNCE``
seconds (or the hook's own), and when it ends one event goes out for
everything marked meanwhile: a bulk edit of 1,000 rows is one event per
channel. Clients then refetch what the channel shows, once.

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
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .conf import conf

if TYPE_CHECKING:
    from django.db import models

    from .hooks import Hook

logger = logging.getLogger("django_sse")

#: What a refresh hook's event name says instead of created/updated/deleted.
REFRESH_ACTION = "refresh"
#: The longest window a hook may ask for: a refresh is meant to be prompt.
MAX_WINDOW = 60.0


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

    def _send_due(self, now: float | None, deadline: float | None = None) -> int:
        """Send the windows due at ``now`` (every window: ``None``), after any
        batch being sent already (so that a flush at exit waits for the thread's
        batch instead of leaving it to die with the process); returns how many."""
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self._sending.acquire(timeout=wait):
            logger.warning("Refresh events were not sent: the previous batch is still sending")
            return 0
        try:
            with self._wake:
                keys = [k for k, w in self._windows.items() if now is None or w.due <= now]
                due = [(key[0], self._windows.pop(key)) for key in keys]
                self._in_flight = len(due)
            if due:
                _send(due, deadline)
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
            if self._send_due(time.monotonic()):
                # This thread lives as long as the process: it keeps no connection.
                connections.close_all()

    def flush(self, deadline: float | None = None) -> int:
        """Send every open window's event now (until ``deadline``); returns how many."""
        return self._send_due(None, deadline)


def _send(due: list[tuple[str, _Window]], deadline: float | None = None) -> None:
    """Publish the windows' events, one after the other (each layer call is
    bounded by ``SSE_PUBLISH_TIMEOUT``); stop at ``deadline`` if given."""
    from .publish import send_event

    for n, (channel, window) in enumerate(due):
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("%d refresh event(s) were not sent: out of time", len(due) - n)
            return
        try:
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


def check_refresh(label: str, refresh: object, given: list[str]) -> None:
    """Refuse a ``refresh=`` hook option that is not ``True``/``False`` or a
    number of seconds in (0, :data:`MAX_WINDOW`], or comes with a payload."""
    if refresh is False:
        return
    if refresh is not True:
        if not isinstance(refresh, int | float) or isinstance(refresh, bool):
            raise TypeError(f"hook for {label}: refresh must be True or seconds, got {refresh!r}")
        if not 0 < refresh <= MAX_WINDOW:
            raise ValueError(
                f"hook for {label}: refresh must be more than 0 and at most "
                f"{MAX_WINDOW:g} seconds, got {refresh!r}"
            )
    if given:
        raise TypeError(
            f"hook for {label}: a refresh hook sends no payload, so it takes no {', '.join(given)}"
        )


def refresh_hook(hook: Hook, instance: models.Model, using: str | None) -> None:
    """Mark the channels of ``hook`` for ``instance`` once the transaction
    commits (at once outside one); a rollback marks nothing. Bad channel names
    raise here, at the save, not later in the debounce thread."""
    from .channels import registry
    from .events import build_event

    opts = hook.model._meta
    name = hook.event_name(REFRESH_ACTION)
    window = conf.SSE_REFRESH_DEBOUNCE if hook.refresh is True else float(hook.refresh)
    alias = using or instance._state.db or DEFAULT_DB_ALIAS
    for channel in hook.channel_names(instance):
        # The model and channel only: one event stands for many rows.
        data = {"model": opts.label_lower, "channel": channel}
        build_event(channel, name, data)  # validates, as send_event would
        registry.require(channel)
        transaction.on_commit(_marker(channel, name, data, window), using=alias)


def _marker(channel: str, event: str, data: Any, window: float) -> Any:
    def mark() -> None:
        debouncer().mark(channel, event, data, window)

    return mark


def flush(timeout: float | None = None) -> int:
    """Send the pending refresh events of this process now, for up to
    ``timeout`` seconds if given; returns how many were due."""
    current = _debouncer
    if current is None or current.pid != os.getpid():
        return 0
    return current.flush(None if timeout is None else time.monotonic() + timeout)


def _at_exit() -> None:
    flush(conf.SSE_PUBLISH_TIMEOUT + 1.0)


def _flush_then_close(timeout: float) -> None:
    flush(timeout)
    connections.close_all()  # a worker thread of the loop's executor


async def aflush(timeout: float) -> None:
    """:func:`flush` from async code (the server's shutdown), within ``timeout``."""
    if _debouncer is None or not _debouncer.pending():
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(_flush_then_close, timeout), timeout + 1.0)
    except TimeoutError:
        logger.warning("Shutdown: refresh events still being sent after %gs", timeout)
