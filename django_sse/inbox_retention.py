"""Inbox retention: ``SSE_INBOX_MAX_AGE`` and ``SSE_INBOX_MAX_ITEMS``, in bulk.

Run by ``manage.py sse_prune``. Two statements whatever the number of rows
(a model ``delete()`` would load every row first). Users who lost unread
items get a ``sync`` event with their new count, so no badge keeps counting
items that are gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .batch import column
from .conf import conf


def prune(now: datetime | None = None, *, using: str = DEFAULT_DB_ALIAS) -> int:
    from .inbox import publish_counts
    from .models import InboxItem

    conn = connections[using]
    table = conn.ops.quote_name(InboxItem._meta.db_table)
    pk, recipient, created, read_at = (
        column(InboxItem, name) for name in ("id", "recipient", "created", "read_at")
    )
    removed = 0
    touched: set[Any] = set()
    with conn.cursor() as cursor:
        max_age = conf.SSE_INBOX_MAX_AGE
        if max_age is not None:
            cutoff = (now or timezone.now()) - timedelta(seconds=max_age)
            cursor.execute(
                f"DELETE FROM {table} WHERE {created} < %s RETURNING {recipient}, {read_at}",
                [conn.ops.adapt_datetimefield_value(cutoff)],
            )
            rows = cursor.fetchall()
            removed += len(rows)
            touched.update(user for user, read in rows if read is None)
        keep = conf.SSE_INBOX_MAX_ITEMS
        if keep is not None:
            cursor.execute(
                f"DELETE FROM {table} WHERE {pk} IN (SELECT {pk} FROM ("
                f"SELECT {pk}, ROW_NUMBER() OVER (PARTITION BY {recipient} ORDER BY {pk} DESC)"
                f" AS n FROM {table}) ranked WHERE n > %s) RETURNING {recipient}, {read_at}",
                [keep],
            )
            rows = cursor.fetchall()
            removed += len(rows)
            touched.update(user for user, read in rows if read is None)
    if touched:
        publish_counts(sorted(touched), using=using)
    return removed
