"""The background tasks of one hub: spawned, supervised, and all cancelled
when the hub stops, so that no task outlives its hub."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger("django_sse")

#: Seconds before a dead loop is restarted, doubling up to the maximum.
RESTART_INITIAL = 0.1
RESTART_MAX = 5.0


class Tasks:
    """A set of tasks on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # An empty context: the hub outlives the request that happened to start
        # it, and must not inherit that request's thread-sensitive executor.
        task = self.loop.create_task(coro, context=contextvars.Context())
        self.running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("A django_sse hub task failed", exc_info=task.exception())

    def keep_running(
        self, factory: Callable[[], Coroutine[Any, Any, Any]], name: str
    ) -> asyncio.Task[Any]:
        """Run the loop ``factory()`` until cancelled, restarting it (with
        backoff) whenever it dies: one bug must not end delivery for good."""

        async def supervise() -> None:
            backoff = RESTART_INITIAL
            while True:
                started = self.loop.time()
                try:
                    await factory()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("The hub's %s failed; restarting in %.1fs", name, backoff)
                else:
                    logger.error("The hub's %s returned; restarting in %.1fs", name, backoff)
                if self.loop.time() - started > RESTART_MAX * 4:
                    backoff = RESTART_INITIAL  # it ran a good while: a fresh failure
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_MAX)

        return self.spawn(supervise())

    async def cancel_all(self) -> None:
        """Cancel every task (but the caller's) and wait for them to end."""
        current = asyncio.current_task()
        tasks = [t for t in self.running if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
