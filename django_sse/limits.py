"""Per-user stream limits and stream age, checked before a stream starts.

``SSE_MAX_STREAMS_PER_USER`` is counted per server process: each process
knows its own open streams without asking anyone, so the check costs nothing,
and with N processes behind a load balancer a user can hold up to N times the
limit. Anonymous streams are not counted (they have no user to count by);
refuse them with channel policies instead.
"""

from __future__ import annotations

import random
import weakref
from typing import Any

from .channels import ChannelError
from .conf import conf

#: A stream is closed between this fraction of ``SSE_MAX_STREAM_AGE`` and all of
#: it, so streams opened together do not all reconnect together.
AGE_JITTER = 0.1

_open: dict[str, weakref.WeakSet[Slot]] = {}


class Slot:
    """One open (or opening) stream of a user, held until :meth:`release`.

    Taken in the same step as the check, so requests racing each other cannot
    all pass; dropped with the stream, or when garbage-collected if the door
    never started it."""

    __slots__ = ("__weakref__", "owner")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        _open.setdefault(owner, weakref.WeakSet()).add(self)

    def release(self) -> None:
        slots = _open.get(self.owner)
        if slots is not None:
            slots.discard(self)
            if not slots:
                _open.pop(self.owner, None)


def open_streams(owner: str) -> int:
    slots = _open.get(owner)
    return len(slots) if slots else 0


def reserve(user: Any) -> Slot | None:
    """A slot for a new stream of ``user``, or ``ChannelError(429)``."""
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        return None
    owner = str(user.pk)
    limit = conf.SSE_MAX_STREAMS_PER_USER
    if limit is not None and open_streams(owner) >= limit:
        raise ChannelError(
            429,
            f"too many open streams: you have {open_streams(owner)} open in this server "
            f"process, at most {limit} (SSE_MAX_STREAMS_PER_USER); close one first",
        )
    return Slot(owner)


def stream_age() -> float | None:
    """Seconds this new stream may stay open, jittered, or ``None``."""
    age = conf.SSE_MAX_STREAM_AGE
    if age is None:
        return None
    return age * random.uniform(1 - AGE_JITTER, 1.0)
