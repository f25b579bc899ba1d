"""A stored row's wire bytes (``Record.body``/``Record.wire()``)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from django_sse.events import encode_body
from django_sse.ids import to_base36
from django_sse.reads import _page_bytes
from django_sse.store import DatabaseStore, Record


def test_a_record_built_without_its_body_encodes_it_when_written() -> None:
    record = Record(1, "public", 1, "n", '"a\\nb"')  # as third-party stores build them
    assert record.body is None
    assert record.wire() == encode_body("n", '"a\\nb"')
    with_body = Record(1, "public", 1, "n", '"a\\nb"', b"event: n\ndata: other\n\n")
    assert with_body.wire() == b"event: n\ndata: other\n\n"
    # The bytes are derived data: two records of one row are equal either way.
    assert record == with_body and hash(record) == hash(with_body)


def test_a_kept_page_counts_its_wire_bytes() -> None:
    bare = [Record(1, "c", 1, "n", "x" * 100)]
    read = [Record(1, "c", 1, "n", "x" * 100, encode_body("n", "x" * 100))]
    assert _page_bytes(read) > _page_bytes(bare) + 100


def test_base36_ids_are_cached_within_a_bound() -> None:
    to_base36.cache_clear()
    for n in range(20_000):
        assert int(to_base36(n), 36) == n
    info = to_base36.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize <= 16_384
    with pytest.raises(ValueError):
        to_base36(-1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_the_database_store_reads_rows_with_their_wire_bytes() -> None:
    store = DatabaseStore()
    await sync_to_async(store.append)("public", "n", '"line1\\nline2"')
    await sync_to_async(store.append)("public", "m", "<b>\nsafe</b>")
    records = await sync_to_async(store.read)({"public": 0})
    assert [r.body for r in records] == [encode_body(r.name, r.payload) for r in records]
    assert records[1].wire() == b"event: m\ndata: <b>\ndata: safe</b>\n\n"
