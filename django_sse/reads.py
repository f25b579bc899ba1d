"""Store reads shared by the streams of one hub.

After a deploy every client comes back within a few seconds, most of them
from the same few positions (they were all live when the server went away).
A query per stream would make the store's load grow with the number of
clients; here streams that ask the same thing share queries, so it grows with
the distinct (channel, position) pairs instead:

- Coalesced: a request waits for the next query to *start* and takes its
  answer from it; a query in flight never answers a request made after it
  started. Heads of many channels are one query; events after a position are
  one query per (channel, position).
- Kept: an answer is kept for ``KEEP_SECONDS`` and reused by a stream that
  subscribed after its query started only when nothing can have been missed
  in between: the channel's hub group existed before the query started and
  has dispatched nothing past the answer (so every later event reaches the
  stream live, or through the catch-up poll if the layer dropped it, as for
  any live stream). A full page is reused whatever the stream's age (the
  stream reads the next page anyway). Stored events never change, so a kept
  page is never wrong, only possibly short.
- Never kept: an empty page (a stream reading a hole must see every event
  committed before it asked, or it would report new events as pruned) and a
  head below a resuming client's position (its id would look unknown).
- Oldest kept sequence numbers only grow (pruning), so a kept one is a lower
  bound: a stream that misses that its history expired still finds the hole
  when it reads the page and sends ``stream-reset``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import store as history

if TYPE_CHECKING:
    from .membership import Group

__all__ = ["KEEP_BYTES", "KEEP_SECONDS", "SharedReads"]

#: Seconds an answer stays shared after its query started.
KEEP_SECONDS = 2.0
#: Payload bytes kept in shared pages, over all keys (oldest dropped first).
KEEP_BYTES = 8 * 1024 * 1024
#: Heads and oldest values kept, over all channels.
KEEP_VALUES = 100_000

K = TypeVar("K")
R = TypeVar("R")
V = TypeVar("V")

#: Query tasks in flight: held so they are not garbage-collected mid-query.
_RUNNING: set[asyncio.Task[Any]] = set()


class _Next(Generic[K, R]):
    """Coalesce requests for keys into queries, one at a time: each request is
    answered by the first query that starts after it was made."""

    def __init__(self, run: Callable[[list[K]], Awaitable[R]]) -> None:
        self._run = run
        self._keys: dict[K, None] = {}
        self._pending: asyncio.Future[R] | None = None
        self.busy = False

    @property
    def idle(self) -> bool:
        return not self.busy and self._pending is None

    async def get(self, keys: Iterable[K]) -> R:
        self._keys.update(dict.fromkeys(keys))
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
        pending = self._pending
        if not self.busy:
            self._start()
        # One waiter cancelled (its client left) must not cancel the others'.
        return await asyncio.shield(pending)

    def _start(self) -> None:
        keys, future = list(self._keys), self._pending
        assert future is not None
        self._keys, self._pending, self.busy = {}, None, True
        task = asyncio.get_running_loop().create_task(self._query(keys, future))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _query(self, keys: list[K], future: asyncio.Future[R]) -> None:
        try:
            result = await self._run(keys)
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(RuntimeError("the shared store read was cancelled"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
        finally:
            self.busy = False
            if self._pending is not None:
                self._start()
            # Retrieved, so that no "never retrieved" warning is logged when
            # every waiter has gone.
            if future.done() and not future.cancelled():
                future.exception()


class _Kept(Generic[K, V]):
    """Answers by key, each with the time its query started, for ``KEEP_SECONDS``,
    within a size budget (oldest first out: every answer is kept equally long)."""

    def __init__(self, budget: int, size: Callable[[V], int]) -> None:
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._budget = budget
        self._size = size
        self._used = 0

    def get(self, key: K) -> tuple[float, V] | None:
        item = self._items.get(key)
        if item is not None and time.monotonic() - item[0] >= KEEP_SECONDS:
            self._drop(key)
            return None
        return item

    def put(self, key: K, started: float, value: V) -> None:
        self._drop(key)
        size = self._size(value)
        if size > self._budget:
            return
        now = time.monotonic()
        while self._items and now - next(iter(self._items.values()))[0] >= KEEP_SECONDS:
            self._drop(next(iter(self._items)))
        self._items[key] = (started, value)
        self._used += size
        while self._used > self._budget:
            self._drop(next(iter(self._items)))

    def _drop(self, key: K) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._used -= self._size(item[1])


def _page_bytes(records: list[history.Record]) -> int:
    # The payload as stored, and its wire bytes (``Record.body``).
    return sum(len(r.payload) + len(r.body or b"") for r in records) + 1


class SharedReads:
    """The store reads of one hub's streams (see the module docstring).

    ``groups`` is the hub's live view of its layer groups, by channel."""

    def __init__(self, groups: Mapping[str, Group]) -> None:
        self._groups = groups
        #: Queries sent to the store (for the benchmarks and tests).
        self.queries = 0
        self._heads: _Next[str, tuple[float, dict[str, int]]] = _Next(self._query_heads)
        self._oldest: _Next[str, dict[str, int]] = _Next(self._query_oldest)
        self._pages: dict[tuple[str, int, int], _Next[None, list[history.Record]]] = {}
        self._kept_heads: _Kept[str, int] = _Kept(KEEP_VALUES, lambda _: 1)
        self._kept_oldest: _Kept[str, int] = _Kept(KEEP_VALUES, lambda _: 1)
        self._kept_pages: _Kept[tuple[str, int, int], list[history.Record]] = _Kept(
            KEEP_BYTES, _page_bytes
        )

    def _covers(self, channel: str, started: float, since: float, upto: int) -> bool:
        """Whether a stream subscribed at ``since`` may take an answer whose query
        started at ``started`` and that covers ``channel`` up to ``upto``."""
        if started >= since:
            return True
        group = self._groups.get(channel)
        return (
            group is not None
            and group.created <= started
            and (group.seen is None or group.seen <= upto)
        )

    async def _call(self, func: Any, *args: Any) -> Any:
        self.queries += 1
        return await history.call(func, *args)

    # -- heads --------------------------------------------------------------

    async def _query_heads(self, channels: list[str]) -> tuple[float, dict[str, int]]:
        store = history.get_store()
        assert store is not None
        started = time.monotonic()
        found: dict[str, int] = await self._call(store.heads, channels)
        for channel, head in found.items():
            self._kept_heads.put(channel, started, head)
        return started, found

    async def heads(
        self, channels: Iterable[str], since: float, at_least: Mapping[str, int] | None = None
    ) -> dict[str, int]:
        """The last sequence number of each channel, for a stream subscribed at
        ``since``; ``at_least`` are positions the stream must not be told are
        ahead of the store (a resuming client's)."""
        out: dict[str, int] = {}
        missing = []
        for channel in channels:
            kept = self._kept_heads.get(channel)
            floor = (at_least or {}).get(channel, 0)
            if (
                kept is not None
                and kept[1] >= floor
                and self._covers(channel, kept[0], since, kept[1])
            ):
                out[channel] = kept[1]
            else:
                missing.append(channel)
        if missing:
            _, found = await self._heads.get(missing)
            out.update((c, found[c]) for c in missing)
        return out

    # -- oldest -------------------------------------------------------------

    async def _query_oldest(self, channels: list[str]) -> dict[str, int]:
        store = history.get_store()
        assert store is not None
        started = time.monotonic()
        found: dict[str, int] = await self._call(store.oldest, channels)
        # A channel with no events is not kept: one may be stored any moment.
        for channel, first in found.items():
            self._kept_oldest.put(channel, started, first)
        return found

    async def oldest(self, channels: Iterable[str]) -> dict[str, int]:
        """The first sequence number still kept on each channel that has any
        (possibly a little low: see the module docstring)."""
        out: dict[str, int] = {}
        missing = []
        for channel in channels:
            kept = self._kept_oldest.get(channel)
            if kept is None:
                missing.append(channel)
            else:
                out[channel] = kept[1]
        if missing:
            found = await self._oldest.get(missing)
            out.update((c, found[c]) for c in missing if c in found)
        return out

    # -- events -------------------------------------------------------------

    async def read(
        self, positions: dict[str, int], limit: int = history.READ_LIMIT, since: float = 0.0
    ) -> list[history.Record]:
        """Events after ``positions[channel]`` on each channel, oldest first
        (by store order), at most ``limit``: as ``BaseStore.read``, for a
        stream subscribed at ``since`` (``time.monotonic()``)."""
        pages = await asyncio.gather(
            *(self._page(channel, after, limit, since) for channel, after in positions.items())
        )
        if len(pages) == 1:
            return pages[0][:limit]
        merged = sorted((r for page in pages for r in page), key=lambda r: r.pk)
        return merged[:limit]

    async def _page(
        self, channel: str, after: int, limit: int, since: float
    ) -> list[history.Record]:
        key = (channel, after, limit)
        kept = self._kept_pages.get(key)
        if kept is not None:
            started, records = kept
            if len(records) == limit or self._covers(channel, started, since, records[-1].seq):
                return records
        shared = self._pages.get(key)
        if shared is None:
            shared = self._pages[key] = _Next(lambda _: self._query_page(key))
        try:
            return await shared.get((None,))
        finally:
            if shared.idle and self._pages.get(key) is shared:
                del self._pages[key]

    async def _query_page(self, key: tuple[str, int, int]) -> list[history.Record]:
        store = history.get_store()
        assert store is not None
        channel, after, limit = key
        started = time.monotonic()
        records: list[history.Record] = await self._call(store.read, {channel: after}, limit)
        if records:
            self._kept_pages.put(key, started, records)
        return records
