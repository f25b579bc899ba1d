"""The loop thread that publishes for sync code (views, workers, the shell).

Sync code reuses one private event loop, and with it the layer's connection,
instead of a new loop and connection per event. Publishes are queued to it in
call order and run one after another, so the events of a thread reach the
layer in the order they were sent, on any layer.

A stored event's publish is queued and not waited for: the store is the truth
and a failed publish is only logged (streams catch up from the store), so
waiting for Redis to answer bought the caller nothing but a round trip and two
thread switches (about half of what ``send_event`` cost a view). Unstored
events (ephemeral channels, no store) are waited for, because their caller is
told when they are lost. Every queued publish gets up to
``SSE_PUBLISH_TIMEOUT`` from its call, however long the queue: against a
stalled layer the queue drains within that time, and a full queue
(:data:`QUEUE_LIMIT`) makes the caller wait at most that long.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .conf import conf
from .layer import _RateLimitedWarning

logger = logging.getLogger("django_sse")

#: Publishes queued and not yet done, at most; past it callers wait for room.
QUEUE_LIMIT = 1000

#: A publish job: called with the seconds it has left, it publishes.
Job = Callable[[float], Coroutine[Any, Any, None]]

_queue_full = _RateLimitedWarning(
    logging.WARNING,
    "The publishing queue stayed full for SSE_PUBLISH_TIMEOUT (%gs): a publish was "
    "abandoned. Stored events reach streams through the catch-up poll",
)


class _Item:
    __slots__ = ("deadline", "future", "job", "on_error")

    def __init__(
        self,
        job: Job,
        deadline: float,
        future: concurrent.futures.Future[None] | None,
        on_error: Callable[[], None] | None,
    ) -> None:
        self.job = job
        self.deadline = deadline
        self.future = future
        self.on_error = on_error


class LoopThread:
    """A private event loop in a daemon thread, with an ordered publish queue."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.room = threading.BoundedSemaphore(QUEUE_LIMIT)
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        # Created before the loop runs, so no call can be queued ahead of it.
        self.consumer = self.loop.create_task(self._consume())
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="django_sse-publisher", daemon=True
        )
        self.thread.start()
        # A worker or a management command that exits right after sending
        # still hands its queued publishes to the layer (bounded).
        atexit.register(self.drain)

    def close(self) -> None:
        """Stop the consumer and the loop (for tests: the process's own runs
        until exit)."""

        async def stop() -> None:
            self.consumer.cancel()
            await asyncio.gather(self.consumer, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5.0)
        self.loop.close()

    def alive(self) -> bool:
        """Whether this process's thread and its queue's consumer still run."""
        return self.pid == os.getpid() and self.thread.is_alive() and not self.consumer.done()

    async def _consume(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await item.job(item.deadline - time.monotonic())
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # close() stops the consumer itself
                # A layer client leaked a cancellation: this publish failed,
                # the queue's only consumer must not end with it.
                self._failed(item, RuntimeError("the publish was cancelled"))
            except Exception as exc:
                self._failed(item, exc)
            else:
                if item.future is not None:
                    item.future.set_result(None)
            finally:
                self.room.release()
                self.queue.task_done()

    @staticmethod
    def _failed(item: _Item, exc: Exception) -> None:
        if item.future is not None:
            item.future.set_exception(exc)
            return
        try:
            try:
                raise exc
            except Exception:
                if item.on_error is None:
                    logger.warning("A queued publish failed", exc_info=True)
                else:
                    item.on_error()  # in an except block: it may log exc_info
        except Exception:
            logger.exception("The error callback of a queued publish failed")

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop at once (beside the queue) and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            # The coroutine bounds its own layer calls; this bounds the wait
            # for a loop that is busy with something else.
            future.result(conf.SSE_PUBLISH_TIMEOUT + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the publishing loop did not run the call in time") from None

    def publish(self, job: Job, *, wait: bool, on_error: Callable[[], None] | None = None) -> None:
        """Queue ``job`` behind the earlier ones. ``wait``: until it is done,
        raising its error; else return at once and call ``on_error`` (in an
        ``except`` block, on the loop's thread) if it fails. ``TimeoutError``
        when the queue has no room in time (``on_error`` for a job not waited
        for)."""
        timeout = conf.SSE_PUBLISH_TIMEOUT
        deadline = time.monotonic() + timeout
        if not self.room.acquire(timeout=timeout):
            if wait or on_error is None:
                raise TimeoutError("the publishing queue stayed full for SSE_PUBLISH_TIMEOUT")
            _queue_full(timeout)
            try:
                raise TimeoutError("the publishing queue stayed full for SSE_PUBLISH_TIMEOUT")
            except TimeoutError:
                on_error()
            return
        future: concurrent.futures.Future[None] | None = (
            concurrent.futures.Future() if wait else None
        )
        self.loop.call_soon_threadsafe(
            self.queue.put_nowait, _Item(job, deadline, future, None if wait else on_error)
        )
        if future is None:
            return
        try:
            # The job gives up at its deadline; the second is for a busy loop.
            future.result(deadline - time.monotonic() + 1.0)
        except concurrent.futures.TimeoutError:
            raise TimeoutError("the publishing loop did not run the call in time") from None

    def drain(self) -> None:
        """Wait (at most ``SSE_PUBLISH_TIMEOUT`` and a second) for the queue
        to empty: every queued job has given up by then."""
        if self.pid != os.getpid() or not self.thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.queue.join(), self.loop)
        try:
            future.result(conf.SSE_PUBLISH_TIMEOUT + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()


_lock = threading.Lock()
_loop_thread: LoopThread | None = None


def runner() -> LoopThread:
    """This process's publishing loop thread, started on first use."""
    global _loop_thread
    with _lock:
        # A forked worker inherits the object but not the thread; a thread
        # or consumer that died would leave every publish queued for nobody.
        if _loop_thread is None or not _loop_thread.alive():
            _loop_thread = LoopThread()
        return _loop_thread


def drain() -> None:
    """Wait (bounded) until this process's queued publishes are done: tests
    and callers that must see the layer's answer before going on."""
    current = _loop_thread
    if current is not None:
        current.drain()
