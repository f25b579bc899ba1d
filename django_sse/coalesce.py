"""One run of a job for every caller that arrives while the previous run is
in flight: a storm of callers costs a few runs, and each caller still gets a
run that started after it asked (so it sees its own change)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    """Run ``job`` for every caller, once for all callers that arrive while
    the previous run is in flight: each caller gets a run that started after
    it asked."""

    def __init__(self, job: Callable[[], Awaitable[T]]) -> None:
        self.job = job
        self.lock = asyncio.Lock()
        self.next: asyncio.Future[T] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self) -> T:
        if self.next is None:
            future = self.next = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._run(future))
            self._running.add(task)  # a task nobody holds may be collected
            task.add_done_callback(self._running.discard)
        return await asyncio.shield(self.next)

    async def _run(self, future: asyncio.Future[T]) -> None:
        async with self.lock:
            if self.next is future:
                self.next = None  # callers from now on wait for the next run
            try:
                result = await self.job()
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a caller may have gone
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not future.done():
                    future.set_result(result)
