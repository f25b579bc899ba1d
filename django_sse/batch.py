"""Many events in one transaction: the bulk path of ``DatabaseStore``.

``send_events`` (and ``notify()`` to many users) would otherwise cost two
statements and a commit per event. Here a batch costs one upsert of the
channels' sequence rows per :data:`~django_sse.store.CHUNK` channels and one
multi-row ``INSERT`` per few hundred events, in a single transaction.

The guarantees of ``append`` hold: the upsert locks each channel's sequence
row until commit, so the events of one channel commit in sequence order and
without gaps. Channels are locked in name order, so two batches that share
channels wait for each other instead of deadlocking.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.functions import Now
from django.db.models.sql import Query
from django.db.utils import OperationalError

if TYPE_CHECKING:
    from .store import DatabaseStore

#: Rows per ``INSERT``: 5 parameters each stays under SQLite's 32,766 and
#: PostgreSQL's 65,535, and the statement stays a few hundred kilobytes.
ROWS_PER_INSERT = 1000
#: Characters of rows per ``INSERT`` on PostgreSQL (one JSON parameter):
#: PostgreSQL refuses a value over 1 GB, and a 10,000-event batch of
#: ``SSE_MAX_EVENT_BYTES`` payloads is 650 MB. JSON escapes and UTF-8 make a
#: run at most six times this many bytes: under 200 MB.
JSON_BYTES_PER_INSERT = 32 * 1024 * 1024


def column(model: Any, name: str) -> str:
    """The quoted database column of ``model``'s field ``name``, for raw SQL."""
    from django.db.models import Field

    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column
    return str(connections[DEFAULT_DB_ALIAS].ops.quote_name(field.column))


def append_rows(store: DatabaseStore, items: list[tuple[str, str, str]]) -> list[int]:
    """Store ``items`` (channel, name, payload); return their sequence numbers."""
    from .store import APPEND_RETRIES, _is_retryable_append_error

    attempt = 0
    while True:
        try:
            return _append_rows(store, items)
        except OperationalError as exc:
            # As ``append``: a serialization failure outside the caller's
            # transaction wrote nothing and is retried; inside it is theirs.
            outer = not connections[store.using].in_atomic_block
            if not (outer and _is_retryable_append_error(exc) and attempt < APPEND_RETRIES):
                raise
            attempt += 1
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


def _append_rows(store: DatabaseStore, items: list[tuple[str, str, str]]) -> list[int]:
    from .store import _chunks

    conn = connections[store.using]
    qn = conn.ops.quote_name
    seq_table = qn(store.sequences._meta.db_table)
    meta = store.events._meta
    columns = ", ".join(column(store.events, f) for f in ("channel", "seq", "name", "payload"))
    created = column(store.events, "created")
    counts = Counter(channel for channel, _, _ in items)
    with transaction.atomic(using=store.using), conn.cursor() as cursor:
        # The database's clock, as ``append`` uses: Now() compiled for this backend.
        now_sql, now_params = Query(store.events).get_compiler(store.using).compile(Now())
        last: dict[str, int] = {}
        for batch in _chunks(sorted(counts)):
            cursor.execute(
                f"INSERT INTO {seq_table} (channel, last_seq) VALUES "
                + ", ".join(["(%s, %s)"] * len(batch))
                + f" ON CONFLICT (channel) DO UPDATE SET last_seq = {seq_table}.last_seq"
                " + excluded.last_seq RETURNING channel, last_seq",
                [value for channel in batch for value in (channel, counts[channel])],
            )
            last.update((str(c), int(s)) for c, s in cursor.fetchall())
        following = {channel: last[channel] - counts[channel] for channel in counts}
        seqs: list[int] = []
        rows: list[Any] = []
        for channel, name, payload in items:
            following[channel] += 1
            seqs.append(following[channel])
            rows.append((channel, following[channel], name, payload))
        table = qn(meta.db_table)
        if conn.vendor == "postgresql":
            # One JSON parameter, whatever the number of rows: quoting one
            # string is C work in psycopg, where four arrays of 10,000 values
            # were quoted value by value (about 40% of the batch's time).
            # Ordered as given: ids follow sequence numbers within a channel.
            sql = (
                f"INSERT INTO {table} ({columns}, {created}) "
                f"SELECT r.v->>0, (r.v->>1)::bigint, r.v->>2, r.v->>3, {now_sql} "
                "FROM json_array_elements(%s::json) WITH ORDINALITY AS r(v, i) ORDER BY r.i"
            )
            for chunk in _json_chunks(rows):
                cursor.execute(sql, [*now_params, json.dumps(chunk, ensure_ascii=False)])
            return seqs
        row_sql = "(%s, %s, %s, %s, " + now_sql + ")"
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            params: list[Any] = []
            for row in chunk:
                params.extend(row)
                params.extend(now_params)
            cursor.execute(
                f"INSERT INTO {table} ({columns}, {created}) VALUES "
                + ", ".join([row_sql] * len(chunk)),
                params,
            )
    return seqs


def _json_chunks(rows: list[Any]) -> list[list[Any]]:
    """``rows`` in consecutive runs of about :data:`JSON_BYTES_PER_INSERT`
    characters each (at least one row a run): one run, nearly always."""
    chunks: list[list[Any]] = [[]]
    size = 0
    for row in rows:
        length = len(row[0]) + len(row[2]) + len(row[3]) + 32
        if size + length > JSON_BYTES_PER_INSERT and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += length
    return chunks
