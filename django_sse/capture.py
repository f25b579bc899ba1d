"""Where published events can be watched in-process (:mod:`django_sse.testing`).

:func:`published` is called once per event that was stored (when the channel
keeps history) and handed to the channel layer: after validation, and after
the transaction committed for ``send_event`` inside ``atomic()``. With no
watcher it costs one empty-tuple loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .events import Event

Watcher = Callable[[Event], None]

_lock = threading.Lock()
# A tuple, replaced whole: publishers iterate it without taking the lock.
_watchers: tuple[Watcher, ...] = ()


def published(event: Event) -> Event:
    """Show ``event`` to the watchers; returns it, for ``return published(event)``."""
    for watcher in _watchers:
        watcher(event)
    return event


def watch(watcher: Watcher) -> Callable[[], None]:
    """Call ``watcher(event)`` for every event published in this process, from
    the publishing thread; returns the function that stops it."""
    global _watchers
    with _lock:
        _watchers = (*_watchers, watcher)

    def stop() -> None:
        global _watchers
        with _lock:
            _watchers = tuple(w for w in _watchers if w is not watcher)

    return stop
