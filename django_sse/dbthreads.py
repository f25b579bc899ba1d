"""Database connections of streams: a few dedicated threads for store calls
from async code, and releasing the request thread's connection.

``sync_to_async`` would run a store call either on the request's own thread
(whose connection then stays open for the whole life of a stream) or on a
fresh connection per call. These threads instead keep one database connection
each, for the life of the process, and heal it after an error: a stream pins
neither a thread nor a connection, and ``asend_event`` costs one query, not a
connection handshake.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from .conf import conf

T = TypeVar("T")


#: Seconds a store thread may sit idle before its connections are checked on
#: its next call: a database restarted meanwhile then costs no failed write.
HEALTH_CHECK_AFTER = 1.0
_thread = threading.local()


def heal_connections() -> None:
    """Close this thread's connections that are no longer usable.

    The next query reconnects. Checked after an error, and before the first
    call after an idle spell (one round trip, not one per call in a burst)."""
    now = time.monotonic()
    idle = now - getattr(_thread, "used", now)
    _thread.used = now
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if not (conn.errors_occurred or idle > HEALTH_CHECK_AFTER):
            continue
        if conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()


def _run(func: Callable[..., T], args: tuple[Any, ...], retry: bool) -> T:
    heal_connections()
    try:
        return func(*args)
    except (InterfaceError, OperationalError):
        if not retry:
            raise
        # A read that met a connection the database dropped: once more, fresh.
        heal_connections()
        return func(*args)


class StorePool:
    """``size`` single-thread executors; a call goes to the least busy one.

    One executor per thread, rather than one pool, so that every thread can
    be asked to close its own connections (Django connections are per
    thread)."""

    def __init__(self, size: int, kind: str = "store") -> None:
        self.pid = os.getpid()
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"django_sse-{kind}-{i}")
            for i in range(size)
        ]
        self.busy = [0] * size
        self.lock = threading.Lock()

    def submit(self, func: Callable[..., T], args: tuple[Any, ...], retry: bool) -> Future[T]:
        with self.lock:
            index = min(range(len(self.busy)), key=self.busy.__getitem__)
            self.busy[index] += 1
        future = self.executors[index].submit(_run, func, args, retry)

        def done(_: Future[T]) -> None:
            with self.lock:
                self.busy[index] -= 1

        future.add_done_callback(done)
        return future

    def shutdown(self) -> None:
        """Close every thread's connections, then stop the threads."""
        closing = [ex.submit(connections.close_all) for ex in self.executors]
        for future in closing:
            future.result()
        for executor in self.executors:
            executor.shutdown(wait=True)


_pools: dict[str, StorePool] = {}
_pool_lock = threading.Lock()


def get_pool(kind: str = "store") -> StorePool:
    """The store threads, or (``kind="user"``) the threads that run the
    application's sync code for streams outside any request's thread."""
    with _pool_lock:
        pool = _pools.get(kind)
        # A forked worker inherits the object but not its threads.
        if pool is None or pool.pid != os.getpid():
            pool = _pools[kind] = StorePool(conf.SSE_STORE_THREADS, kind)
        return pool


def shutdown() -> None:
    """Close the threads' connections and stop them (tests, shutdown).

    The next call starts new threads."""
    with _pool_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        if pool.pid == os.getpid():
            pool.shutdown()


async def run(func: Callable[..., T], *args: Any, retry: bool = True) -> T:
    """Run ``func(*args)`` on a store thread and wait for it without blocking.

    ``retry`` repeats the call once after a connection error; pass ``False``
    for writes, which must not be repeated."""
    return await asyncio.wrap_future(get_pool().submit(func, args, retry))


async def run_user_code(func: Callable[..., T], *args: Any) -> T:
    """Run the application's sync ``func(*args)`` (a policy, a snapshot) on a
    thread that checks its connections as the store threads do: a database
    restart then costs no denied check. Never repeated: it may write."""
    return await asyncio.wrap_future(get_pool("user").submit(func, args, False))


def _close_idle_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close()


async def release_connections() -> None:
    """Close the connections the calling request's thread holds.

    Authentication and policies run on the request's thread and leave its
    connection open; a stream lives for hours, and Django would close that
    connection only when the response ends. The next query, if any, reopens it."""
    await sync_to_async(_close_idle_connections)()
