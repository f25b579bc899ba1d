"""Event history: the source of truth for ids, resume and catch-up.

The channel layer delivers at most once; the store keeps every event of a
non-ephemeral channel, numbered per channel without gaps, so that a stream can
replay what a client missed and fill any hole the layer leaves.

A store is a class named by ``SSE_STORE``; its methods are synchronous and are
called off the event loop, on a few dedicated threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.functions import Now
from django.db.utils import OperationalError
from django.utils import timezone
from django.utils.module_loading import import_string

from .conf import conf
from .events import encode_body

logger = logging.getLogger("django_sse")

#: Most rows one read returns; longer histories are read in pages.
READ_LIMIT = 1000
#: Channels per ``IN (...)`` list, well under every database's parameter limit.
CHUNK = 500
#: Times an append is run again after a serialization failure; busy channels
#: under SERIALIZABLE see several in a row.
APPEND_RETRIES = 50
#: SQLSTATEs of a transaction the database rolled back for a concurrent one.
_RETRYABLE = {"40001", "40P01"}
#: SQLITE_LOCKED and SQLITE_LOCKED_SHAREDCACHE.
_SQLITE_LOCKED = {6, 262}


@dataclass(frozen=True, slots=True)
class Record:
    pk: int
    channel: str
    seq: int
    name: str
    payload: str
    #: The ``event:`` and ``data:`` lines, encoded when the record was read:
    #: the streams that share a page (:mod:`django_sse.reads`) share these.
    body: bytes | None = field(default=None, compare=False, repr=False)

    def wire(self) -> bytes:
        return self.body if self.body is not None else encode_body(self.name, self.payload)


class BaseStore:
    """The interface every store implements."""

    def append(self, channel: str, name: str, payload: str) -> int:
        """Store an event and return its sequence number on ``channel``.

        Numbers start at 1 and have no gaps. An event must be visible to
        readers once ``append`` returns, and events of one channel must become
        visible in sequence order."""
        raise NotImplementedError

    def read(self, positions: dict[str, int], limit: int = READ_LIMIT) -> list[Record]:
        """Events after ``positions[channel]`` on each channel, oldest first."""
        raise NotImplementedError

    def heads(self, channels: Iterable[str]) -> dict[str, int]:
        """The last sequence number of each channel (0 when it has none)."""
        raise NotImplementedError

    def oldest(self, channels: Iterable[str]) -> dict[str, int]:
        """The first sequence number still kept on each channel that has any."""
        raise NotImplementedError

    def prune(self) -> int:
        """Apply the retention settings; return how many events were removed."""
        raise NotImplementedError


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


class DatabaseStore(BaseStore):
    """History in two tables, on PostgreSQL or SQLite 3.35+ (it needs
    ``INSERT ... ON CONFLICT ... RETURNING``)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        from .models import ChannelSequence, StoredEvent

        self.using = using
        self.events = StoredEvent
        self.sequences = ChannelSequence
        self._last_prune = time.monotonic()
        self._prune_lock = threading.Lock()
        self._sql: dict[str, tuple[str, ...]] = {}

    def _qn(self, name: str) -> str:
        return str(connections[self.using].ops.quote_name(name))

    def append(self, channel: str, name: str, payload: str) -> int:
        # Under REPEATABLE READ or SERIALIZABLE, two publishers of one channel
        # collide on its sequence row and the later one fails with a
        # serialization error: its transaction wrote nothing, so run it again.
        # Inside a caller's transaction that transaction is lost: re-raise.
        attempt = 0
        while True:
            try:
                seq = self._append(channel, name, payload)
            except OperationalError as exc:
                outer = not connections[self.using].in_atomic_block
                if not (outer and _is_retryable_append_error(exc) and attempt < APPEND_RETRIES):
                    raise
                attempt += 1
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                continue
            break
        self._maybe_prune()
        return seq

    def _append(self, channel: str, name: str, payload: str) -> int:
        # Raw SQL, not ``objects.create()``: the model save was half of what
        # ``send_event`` cost a view (docs/benchmarks.rst, send-event).
        conn = connections[self.using]
        sql = self._append_sql(conn.vendor)
        if conn.vendor == "postgresql" and not conn.in_atomic_block:
            # One statement in autocommit mode is its own transaction: the
            # upsert's row lock is held until the event row commits with it.
            with conn.cursor() as cursor:
                cursor.execute(sql[0], [channel, channel, name, payload])
                return int(cursor.fetchone()[0])
        with transaction.atomic(using=self.using), conn.cursor() as cursor:
            if len(sql) == 1:
                cursor.execute(sql[0], [channel, channel, name, payload])
                return int(cursor.fetchone()[0])
            # The upsert locks the channel's row until commit: publishers of
            # one channel commit one after another, in sequence order.
            cursor.execute(sql[0], [channel])
            seq = int(cursor.fetchone()[0])
            cursor.execute(sql[1], [channel, seq, name, payload])
        return seq

    def _append_sql(self, vendor: str) -> tuple[str, ...]:
        """The statements of one append on ``vendor``, built once: PostgreSQL
        numbers and inserts in one statement (a data-modifying ``WITH``),
        SQLite, which has none, in two."""
        cached = self._sql.get(vendor)
        if cached is not None:
            return cached
        from django.db.models.sql import Query

        from .batch import column

        seq_table = self._qn(self.sequences._meta.db_table)
        table = self._qn(self.events._meta.db_table)
        columns = ", ".join(column(self.events, f) for f in ("channel", "seq", "name", "payload"))
        # The database's clock, not the publisher's: one host whose clock runs
        # behind must not make fresh events look old.
        now, params = Query(self.events).get_compiler(self.using).compile(Now())
        assert not params
        created = column(self.events, "created")
        insert = f"INSERT INTO {table} ({columns}, {created})"
        upsert = (
            f"INSERT INTO {seq_table} (channel, last_seq) VALUES (%s, 1) "
            f"ON CONFLICT (channel) DO UPDATE SET last_seq = {seq_table}.last_seq + 1 "
            "RETURNING last_seq"
        )
        if vendor == "postgresql":
            sql: tuple[str, ...] = (
                f"WITH s AS ({upsert}) {insert} SELECT %s, s.last_seq, %s, %s, {now} FROM s "
                f"RETURNING {column(self.events, 'seq')}",
            )
        else:
            sql = (
                upsert,
                f"INSERT INTO {table} ({columns}, {created}) VALUES (%s, %s, %s, %s, {now})",
            )
        self._sql[vendor] = sql
        return sql

    def append_many(self, items: list[tuple[str, str, str]]) -> list[int]:
        """Store ``(channel, name, payload)`` events in one transaction and
        return their sequence numbers, in order: one upsert per
        :data:`CHUNK` channels and one multi-row insert per batch of rows,
        not a round trip per event. Inside a caller's transaction the rows
        stay locked, and the events invisible, until it commits."""
        from .batch import append_rows

        if not items:
            return []
        seqs = append_rows(self, items)
        self._maybe_prune()
        return seqs

    def read(self, positions: dict[str, int], limit: int = READ_LIMIT) -> list[Record]:
        from django.db.models import Q

        if not positions:
            return []
        condition = Q()
        for channel, after in positions.items():
            condition |= Q(channel=channel, seq__gt=after)
        rows = (
            self.events.objects.using(self.using)
            .filter(condition)
            .order_by("pk")
            .values_list("pk", "channel", "seq", "name", "payload")[:limit]
        )
        return [Record(*row, encode_body(row[3], row[4])) for row in rows]

    def heads(self, channels: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(channels))
        found: dict[str, int] = {}
        for batch in _chunks(wanted):
            found.update(
                self.sequences.objects.using(self.using)
                .filter(channel__in=batch)
                .values_list("channel", "last_seq")
            )
        return {channel: found.get(channel, 0) for channel in wanted}

    def oldest(self, channels: Iterable[str]) -> dict[str, int]:
        from django.db.models import Min

        found: dict[str, int] = {}
        for batch in _chunks(dict.fromkeys(channels)):
            rows = (
                self.events.objects.using(self.using)
                .filter(channel__in=batch)
                .values("channel")
                .annotate(first=Min("seq"))
                .values_list("channel", "first")
            )
            found.update(rows)
        return found

    def prune(self) -> int:
        cutoff = timezone.now() - timedelta(seconds=conf.SSE_HISTORY_MAX_AGE)
        keep = conf.SSE_HISTORY_MAX_EVENTS
        conn = connections[self.using]
        events = self._qn(self.events._meta.db_table)
        sequences = self._qn(self.sequences._meta.db_table)
        # One raw statement for both limits and every channel: a model
        # ``.delete()`` loads every expired row, payloads too, as soon as any
        # app connects a ``post_delete`` receiver.
        # The age limit removes a prefix of each channel: every event up to
        # the newest one older than the cutoff. ``created`` is the publisher's
        # clock and publishers' clocks differ: deleting by ``created`` alone
        # could keep #1 and delete #2, a hole that ``oldest()`` cannot show.
        with conn.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {events} WHERE id IN ("
                f"SELECT e.id FROM {events} e "
                f"JOIN {sequences} s ON s.channel = e.channel "
                f"LEFT JOIN (SELECT channel, MAX(seq) AS upto FROM {events} "
                "WHERE created < %s GROUP BY channel) old ON old.channel = e.channel "
                "WHERE e.seq <= s.last_seq - %s OR e.seq <= old.upto)",
                [conn.ops.adapt_datetimefield_value(cutoff), keep],
            )
            return max(int(cursor.rowcount), 0)

    def _maybe_prune(self) -> None:
        interval = conf.SSE_HISTORY_PRUNE_INTERVAL
        if interval <= 0 or time.monotonic() - self._last_prune < interval:
            return
        if not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._last_prune = time.monotonic()
            self.prune()
        except Exception:
            # The event is stored: a failed prune must not fail the publish.
            logger.warning("Pruning the event history failed", exc_info=True)
        finally:
            self._prune_lock.release()


def _is_retryable_append_error(exc: BaseException) -> bool:
    """A failed append that wrote nothing and may run again: a serialization
    failure or deadlock on PostgreSQL, a shared-cache lock on SQLite."""
    cause = exc.__cause__
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if code in _RETRYABLE:
        return True
    # SQLite in shared-cache mode (an in-memory database shared by threads)
    # answers "database table is locked" at once, with no busy timeout: the
    # statement wrote nothing.
    return getattr(cause, "sqlite_errorcode", None) in _SQLITE_LOCKED


_stores: dict[str, BaseStore] = {}
_stores_lock = threading.Lock()


def get_store() -> BaseStore | None:
    """The configured store (one instance per ``SSE_STORE`` path), or ``None``."""
    path = conf.SSE_STORE
    if path is None:
        return None
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            cls: Any = import_string(path)
            store = _stores[path] = cls()
        return store


async def call(func: Any, *args: Any, retry: bool = True) -> Any:
    """Run a store method on a store thread (:mod:`django_sse.dbthreads`):
    no thread is pinned, and the thread's connection is reused.

    Pass ``retry=False`` for a write, which must not run twice."""
    from . import dbthreads

    return await dbthreads.run(func, *args, retry=retry)


def append_many(store: BaseStore, items: list[tuple[str, str, str]]) -> list[int]:
    """Store many events in one transaction; their sequence numbers, in order.

    Uses the store's ``append_many`` when it has one (``DatabaseStore``: a few
    statements for any number of events), else ``append`` for each event."""
    bulk = getattr(store, "append_many", None)
    if bulk is not None:
        return list(bulk(items))
    return [store.append(channel, name, payload) for channel, name, payload in items]
