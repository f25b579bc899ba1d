"""Limits on streams: open streams per user (anonymous ones per client
address), and the age at which a stream closes.

Counted per server process: the count lives in memory, so with N processes a
user may hold up to N times ``SSE_MAX_STREAMS_PER_USER`` streams in all.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from .channels import ChannelError
from .conf import conf

logger = logging.getLogger("django_sse")

#: A stream closes between 90% and 100% of ``SSE_MAX_STREAM_AGE``, so streams
#: opened together do not all reconnect at once.
AGE_JITTER = 0.1
#: Seconds a refused client is told to wait (``Retry-After``) before it tries
#: again: streams are long-lived, so a slot rarely frees sooner.
RETRY_AFTER = 30
#: Counted owners of anonymous streams are addresses, kept apart from user pks.
_ADDRESS = "address "

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


def acquire(owner: str | None, address: str | None = None) -> StreamSlot | None:
    """Count a new stream of ``owner`` (anonymous: of client ``address``), or
    raise a 429 ``ChannelError``."""
    if owner is not None:
        limit, key = conf.SSE_MAX_STREAMS_PER_USER, owner
        per, setting = "per user", "SSE_MAX_STREAMS_PER_USER"
    else:
        # Each anonymous stream can make the server read up to
        # SSE_MAX_CHANNELS x 1,000 rows of history: bounded per address too.
        limit, key = conf.SSE_MAX_STREAMS_PER_ADDRESS, _ADDRESS + (address or "")
        per, setting = "per client address", "SSE_MAX_STREAMS_PER_ADDRESS"
    if limit is None:
        return None
    with _lock:
        _apply_freed()
        count = _open.get(key, 0)
        if count >= limit:
            raise ChannelError(
                429,
                f"too many open streams: at most {limit} {per} in one server process ({setting})",
            )
        _open[key] = count + 1
    return StreamSlot(key)


#: Seconds a client is told to wait after a 503 (a database outage): short,
#: the JS helper adds its own jitter.
RETRY_AFTER_UNAVAILABLE = 5


def retry_after(status: int) -> dict[str, str]:
    """The ``Retry-After`` header every 429 and 503 carries."""
    if status == 429:
        return {"Retry-After": str(RETRY_AFTER)}
    if status == 503:
        return {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    return {}


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address: the connection's, or the last value of the
    trusted proxy's header (``SSE_CLIENT_IP_HEADER``), which that proxy appends
    after whatever the client sent."""
    header = conf.SSE_CLIENT_IP_HEADER
    if header:
        value = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
        last = str(value).rsplit(",", 1)[-1].strip()
        if last:
            return _counted(last[:64])
    remote = str(meta.get("REMOTE_ADDR") or "")
    if meta.get("HTTP_X_FORWARDED_FOR") and _is_internal(remote):
        _warn_proxy(remote)
    return _counted(remote)


def _counted(address: str) -> str:
    """What the limit counts: the address, or its /64 for IPv6, where one
    client holds a whole /64 and could rotate addresses within it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


def _is_internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


_warned_proxy = False


def _warn_proxy(remote: str) -> None:
    # Once per process: behind a proxy, every anonymous visitor would share
    # the proxy's limit, so a few clients lock everyone else out.
    global _warned_proxy
    if _warned_proxy or conf.SSE_MAX_STREAMS_PER_ADDRESS is None:
        return
    _warned_proxy = True
    logger.warning(
        "Stream requests come through a proxy (%s, with X-Forwarded-For) but "
        "SSE_CLIENT_IP_HEADER is not set: every anonymous client shares one "
        "SSE_MAX_STREAMS_PER_ADDRESS limit. Set SSE_CLIENT_IP_HEADER to the header "
        "the proxy sets.",
        remote,
    )


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
