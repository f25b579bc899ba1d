"""Closing open streams when the server shuts down.

An event stream never ends by itself, and servers end them badly: on SIGTERM
uvicorn stops accepting, then waits for open connections (forever, unless
``--timeout-graceful-shutdown``) and only then sends ``lifespan.shutdown``;
daphne has no lifespan and cancels every request at once. So the streams are
closed when the signal arrives: the server's own SIGTERM and SIGINT handlers
are chained (as sse-starlette does), and run once this process's streams have
written ``stream-closed {"reason": "shutdown", "reconnect": true}`` and
ended, or after :data:`GRACE` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger("django_sse")

#: Seconds the server's own handler waits for the streams to end.
GRACE = 2.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
CLOSE_REASON = "shutdown"

_lock = threading.Lock()
#: The handlers of ``SIGNALS`` as :func:`install` left them: while they are
#: still the ones in place, a stream need not look again. Compared by
#: identity, not remembered as a flag: a server that sets its handlers after
#: ours (uvicorn restores the previous ones when it stops, and a second
#: ``Server.serve()`` in the process sets its own) is chained again.
_seen: tuple[Any, ...] | None = None
#: Set once shutdown has begun: a stream that opens now is closed at once.
closing = threading.Event()
#: One future per fast-path stream being served, done when it has ended.
_open: set[asyncio.Future[None]] = set()


def opened() -> asyncio.Future[None]:
    """Count a fast-path stream; pass the result to :func:`ended`."""
    done = asyncio.get_running_loop().create_future()
    _open.add(done)
    return done


def ended(done: asyncio.Future[None]) -> None:
    _open.discard(done)
    if not done.done():
        done.set_result(None)


def _is_server_handler(handler: Any) -> bool:
    # Only a handler the server installed: never Python's default SIGINT
    # handler (a test runner's Ctrl-C) or SIG_DFL / SIG_IGN.
    return callable(handler) and handler is not signal.default_int_handler


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Chain the server's SIGTERM and SIGINT handlers, once per process.

    Called when the server reports startup (lifespan) and on the first stream
    (servers without lifespan); a no-op off the main thread, where signal
    handlers cannot be set, and for signals the server does not handle."""
    global _seen
    if threading.current_thread() is not threading.main_thread():
        return
    if _seen is not None and tuple(map(signal.getsignal, SIGNALS)) == _seen:
        return
    with _lock:
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if getattr(previous, "django_sse", False) or not _is_server_handler(previous):
                continue
            signal.signal(sig, _chain(loop, previous))
        _seen = tuple(map(signal.getsignal, SIGNALS))


def _chain(loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        if closing.is_set() or loop.is_closed():
            previous(signum, frame)  # a second signal: do not wait again
            return
        closing.set()
        loop.call_soon_threadsafe(_start, loop, previous, signum, frame)

    handler.django_sse = True  # type: ignore[attr-defined]
    return handler


def _start(loop: asyncio.AbstractEventLoop, previous: Any, signum: int, frame: Any) -> None:
    loop.create_task(_close_then(previous, signum, frame))


def bound() -> float:
    """Seconds :func:`close_streams` takes at most: :data:`GRACE` for the
    streams, then one ``SSE_PUBLISH_TIMEOUT`` to leave the layer's groups."""
    from .conf import conf

    return GRACE + conf.SSE_PUBLISH_TIMEOUT


async def _close_then(previous: Any, signum: int, frame: Any) -> None:
    limit = bound()
    try:
        # close_streams bounds itself; this is the backstop.
        await asyncio.wait_for(close_streams(), limit + 1.0)
    except TimeoutError:
        logger.warning("Shutdown: %d stream(s) still open after %gs", len(_open), limit)
    except Exception:
        logger.exception("Shutdown: closing the streams failed")
    finally:
        previous(signum, frame)


async def close_streams() -> None:
    """Close every stream of the running loop's hubs with reason ``shutdown``
    and wait until the fast path's streams have ended: each stream gets up to
    :data:`GRACE` seconds to write its closing event (see :func:`bound`)."""
    from .conf import conf
    from .debounce import aflush
    from .hub import local_hubs
    from .lifecycle import flush

    closing.set()
    # Refresh events still in their debounce window go out now, while the
    # streams close (within bound(): both take SSE_PUBLISH_TIMEOUT at most).
    flushing = asyncio.ensure_future(aflush(conf.SSE_PUBLISH_TIMEOUT))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GRACE
    for hub in local_hubs():
        if hub.loop is loop:
            await hub.stop(grace=GRACE)
    waiting = [done for done in _open if done.get_loop() is loop]
    if waiting:
        _, pending = await asyncio.wait(waiting, timeout=max(deadline - loop.time(), 0.0))
        if pending:
            logger.warning("Shutdown: %d stream(s) still open after %gs", len(pending), GRACE)
    # The stream_closed signals of the streams just closed, sent before the end.
    await flush()
    await flushing
