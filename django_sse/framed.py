"""Replay pages framed once for every stream of a hub that writes them.

In a resume storm thousands of streams on the same channels resume from the
same few positions and read the same store pages (:mod:`django_sse.reads`).
Framing a page (an ``id:`` naming the position after each event, the event's
lines) gives the same bytes for each of them, so a hub keeps the last pages it
framed, keyed by the stream's channels, its position before the page and the
page's rows; a stream with the same key writes the bytes and moves its cursor
to where they end. Rows are immutable once stored, so a key never names two
different pages.
"""

from __future__ import annotations

from collections import OrderedDict

#: Pages kept per hub, and the bytes they may hold in all.
KEPT_PAGES = 256
KEPT_BYTES = 8 * 1024 * 1024

Key = tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]
#: The page's bytes, and the cursor's positions after it (in channel order).
Framed = tuple[bytes, tuple[int, ...]]


class FramedPages:
    def __init__(self, pages: int = KEPT_PAGES, size: int = KEPT_BYTES) -> None:
        self._items: OrderedDict[Key, Framed] = OrderedDict()
        self._pages = pages
        self._size = size
        self._used = 0
        self.hits = 0

    def get(self, key: Key) -> Framed | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: Key, framed: Framed) -> None:
        if len(framed[0]) > self._size or key in self._items:
            return
        self._items[key] = framed
        self._used += len(framed[0])
        while len(self._items) > self._pages or self._used > self._size:
            _, old = self._items.popitem(last=False)
            self._used -= len(old[0])
