"""Replay pages framed once for every stream of a hub that writes them.

In a resume storm thousands of streams on the same channels resume from the
same few positions and read the same store pages (:mod:`django_sse.reads`).
Framing a page (an ``id:`` naming the position after each event, the event's
lines) gives the same bytes for each of them, so a hub keeps the last pages it
framed, keyed by the stream's channels, its position before the page and the
page's rows; a stream with the same key writes the bytes and moves its cursor
to where they end.

A key names rows by their ``pk``, but a hit is taken only when the rows are
equal to the ones framed (the very same objects while :mod:`.reads` shares
them, so the check costs a pointer comparison per row): a store whose ``pk``
is not unique, or a table emptied and numbered afresh under a running server,
never gets another page's bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from . import store as history

#: Pages kept per hub, and the bytes they may hold in all.
KEPT_PAGES = 256
KEPT_BYTES = 8 * 1024 * 1024
#: Bytes counted per row for its key entry and reference (a rough upper bound).
ROW_OVERHEAD = 48

Key = tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]
#: The page's bytes, and the cursor's positions after it (in channel order).
Framed = tuple[bytes, tuple[int, ...]]
#: What is kept: the framed page, the rows it was framed from, its cost.
_Item = tuple[Framed, tuple[history.Record, ...], int]


def _cost(framed: Framed, records: tuple[history.Record, ...]) -> int:
    # The rows are held too (for the check on a hit): their text counts.
    rows = sum(len(r.payload) + len(r.body or b"") + ROW_OVERHEAD for r in records)
    return len(framed[0]) + rows


class FramedPages:
    def __init__(self, pages: int = KEPT_PAGES, size: int = KEPT_BYTES) -> None:
        self._items: OrderedDict[Key, _Item] = OrderedDict()
        self._pages = pages
        self._size = size
        self._used = 0
        #: Pages written from here instead of framed again (benchmarks, tests).
        self.hits = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def used(self) -> int:
        """The bytes the kept pages count for."""
        return self._used

    def get(self, key: Key, records: Sequence[history.Record]) -> Framed | None:
        item = self._items.get(key)
        if item is None:
            return None
        # Tuple equality compares identity first: shared rows cost nothing.
        if item[1] != tuple(records):
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: Key, records: Sequence[history.Record], framed: Framed) -> None:
        rows = tuple(records)
        cost = _cost(framed, rows)
        if cost > self._size:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._used -= old[2]
        self._items[key] = (framed, rows, cost)
        self._used += cost
        while len(self._items) > self._pages or self._used > self._size:
            _, dropped = self._items.popitem(last=False)
            self._used -= dropped[2]
