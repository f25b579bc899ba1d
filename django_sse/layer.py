"""Channel-layer calls with a deadline.

channels-redis sets no socket timeouts: against a Redis that accepts
connections and never answers, ``group_send`` waits forever, and so would
``send_event`` and ``revoke()``. Every call here gives up after
``SSE_PUBLISH_TIMEOUT`` seconds. A stored event is not lost when its publish
is abandoned: streams read it from the store on their next catch-up poll.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from . import metrics
from .conf import conf

logger = logging.getLogger("django_sse")

#: Seconds between two warnings about the same kind of timeout: a stalled
#: Redis under a busy publisher would otherwise log one line per event.
WARN_EVERY = 60.0


class _RateLimitedWarning:
    """A warning logged at most once per ``WARN_EVERY`` seconds, with a count
    of the occurrences it stood for."""

    def __init__(self, level: int, message: str) -> None:
        self.level = level
        self.message = message
        self.lock = threading.Lock()
        self.last: float | None = None
        self.missed = 0

    def __call__(self, *args: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if self.last is not None and now - self.last < WARN_EVERY:
                self.missed += 1
                return
            self.last, missed, self.missed = now, self.missed, 0
        suffix = f" ({missed} more since the last warning)" if missed else ""
        logger.log(self.level, self.message + suffix, *args)


_publish_timed_out = _RateLimitedWarning(
    logging.WARNING,
    "The channel layer did not answer within SSE_PUBLISH_TIMEOUT (%gs); the publish "
    "was abandoned. Stored events reach streams through the catch-up poll",
)
_revoke_timed_out = _RateLimitedWarning(
    logging.ERROR,
    "The channel layer did not answer within SSE_PUBLISH_TIMEOUT (%gs); a revocation "
    "was abandoned and other processes' streams it should close stay open",
)
revoke_failed = _RateLimitedWarning(
    logging.ERROR,
    "The channel layer failed (%s); a revocation was abandoned and other processes' "
    "streams it should close stay open (this process's streams were closed)",
)


async def group_send(
    layer: Any,
    group: str,
    message: dict[str, Any],
    *,
    control: bool = False,
    timeout: float | None = None,
) -> bool:
    """``layer.group_send`` bounded by ``SSE_PUBLISH_TIMEOUT`` (or by
    ``timeout``, what is left of it for a publish that waited in a queue).

    Returns ``False`` (and warns, rate-limited) when the layer did not answer
    in time. ``control`` marks a revocation, whose loss is logged as an error,
    and which also returns ``False`` on any other layer error (a refused
    connection: a logout must not fail with Redis); a publish's other errors
    propagate."""
    limit = conf.SSE_PUBLISH_TIMEOUT
    try:
        await asyncio.wait_for(
            layer.group_send(group, message), limit if timeout is None else max(timeout, 0.0)
        )
    except TimeoutError:
        metrics.get().layer_error("control" if control else "publish", "timeout")
        (_revoke_timed_out if control else _publish_timed_out)(limit)
        return False
    except Exception as exc:
        metrics.get().layer_error("control" if control else "publish", "error")
        if not control:
            raise
        revoke_failed(f"{type(exc).__name__}: {exc}"[:200])
        return False
    return True
