"""Limits on streams: open streams per user, and the age at which a stream closes.

Counted per server process: the count lives in memory, so with N processes a
user may hold up to N times ``SSE_MAX_STREAMS_PER_USER`` streams in all.
"""

from __future__ import annotations

import random
import threading
from collections import deque

from .channels import ChannelError
from .conf import conf

#: A stream closes between 90% and 100% of ``SSE_MAX_STREAM_AGE``, so streams
#: opened together do not all reconnect at once.
AGE_JITTER = 0.1

_lock = threading.Lock()
_open: dict[str, int] = {}
# Owners of slots released while the lock was busy. A finalizer may run in the
# middle of ``with _lock`` on the same thread (a garbage collection there), so
# a release never waits for the lock: it queues, and the next holder counts it.
_freed: deque[str] = deque()


def _apply_freed() -> None:
    """Count the queued releases; the caller holds ``_lock``."""
    while _freed:
        owner = _freed.popleft()
        left = _open.get(owner, 1) - 1
        if left > 0:
            _open[owner] = left
        else:
            _open.pop(owner, None)


class StreamSlot:
    """One open stream counted against its user; released exactly once."""

    __slots__ = ("_released", "owner")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        _freed.append(self.owner)
        if _lock.acquire(blocking=False):
            try:
                _apply_freed()
            finally:
                _lock.release()

    # A response that is never iterated never runs the stream's ``finally``.
    __del__ = release


def acquire(owner: str | None) -> StreamSlot | None:
    """Count a new stream of ``owner``, or raise a 429 ``ChannelError``."""
    limit = conf.SSE_MAX_STREAMS_PER_USER
    if limit is None or owner is None:
        return None
    with _lock:
        _apply_freed()
        count = _open.get(owner, 0)
        if count >= limit:
            raise ChannelError(
                429,
                f"too many open streams: at most {limit} per user in one server process "
                "(SSE_MAX_STREAMS_PER_USER)",
            )
        _open[owner] = count + 1
    return StreamSlot(owner)


def open_streams(owner: str) -> int:
    with _lock:
        _apply_freed()
        return _open.get(owner, 0)


def max_age() -> float | None:
    """Seconds this stream may stay open, jittered, or ``None``."""
    age = conf.SSE_MAX_STREAM_AGE
    if age is None:
        return None
    return age * (1 - AGE_JITTER * random.random())
