"""send_events / asend_events: many events, one transaction, one validation pass."""

from __future__ import annotations

import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction

from django_sse import asend_events, send_event, send_events
from django_sse.hub import get_hub
from django_sse.models import ChannelSequence, StoredEvent
from tests.sse_client import unique, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def seqs(channel: str) -> list[int]:
    return list(
        StoredEvent.objects.filter(channel=channel).order_by("seq").values_list("seq", flat=True)
    )


def test_a_batch_numbers_each_channel_without_gaps_after_single_events() -> None:
    a, b = f"notes:{unique()}", f"notes:{unique()}"
    send_event(a, "e", 0)
    events = send_events([(a, "e", 1), (b, "e", 1), (a, "e", 2), (b, "e", 2), (a, "e", 3)])
    assert [(e.channel, e.seq) for e in events] == [(a, 2), (b, 1), (a, 3), (b, 2), (a, 4)]
    assert seqs(a) == [1, 2, 3, 4]
    assert seqs(b) == [1, 2]
    assert ChannelSequence.objects.get(channel=a).last_seq == 4
    rows = StoredEvent.objects.filter(channel=a).order_by("seq")
    assert [json.loads(r.payload) for r in rows] == [0, 1, 2, 3]
    assert all(r.created is not None for r in rows)


def test_a_batch_stores_any_text_verbatim_in_id_order() -> None:
    from django.utils.html import format_html

    channel = f"notes:{unique()}"
    values = ['quote " backslash \\ slash /', "line\nbreak\ttab", "é ü 漢字 🎉", "\u2028"]
    markup = format_html("<li data-x='{}'>{}</li>", '"q"', "<b>")
    events = send_events([(channel, "e", v) for v in values] + [(channel, "e-2", markup)])
    rows = StoredEvent.objects.filter(channel=channel).order_by("pk")
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]  # ids follow sequence numbers
    assert [r.payload for r in rows] == [e.payload for e in events]
    assert [json.loads(r.payload) for r in rows[:4]] == values
    assert rows[4].payload == str(markup) and rows[4].name == "e-2"


def test_one_bad_event_stores_nothing() -> None:
    a = f"notes:{unique()}"
    with pytest.raises(ValueError, match="reserved"):
        send_events([(a, "e", 1), (a, "stream-closed", 2)])
    with pytest.raises(ValueError, match="no registered"):
        send_events([(a, "e", 1), ("unregistered-channel", "e", 2)])
    with pytest.raises(TypeError, match="JSON"):
        send_events([(a, "e", 1), (a, "e", object())])
    with pytest.raises(ValueError, match="SSE_MAX_EVENT_BYTES"):
        send_events([(a, "e", 1), (a, "e", "x" * 70000)])
    with pytest.raises(TypeError, match="tuples"):
        send_events([(a, "e", 1), (a, "e")])
    assert seqs(a) == []


def test_inside_atomic_the_batch_waits_for_commit_and_a_rollback_sends_nothing() -> None:
    a = f"notes:{unique()}"
    with pytest.raises(RuntimeError), transaction.atomic():
        send_events([(a, "e", 1)])
        raise RuntimeError
    assert seqs(a) == []
    with transaction.atomic():
        events = send_events([(a, "e", 1), (a, "e", 2)])
        assert [e.seq for e in events] == [None, None]
        assert seqs(a) == []
    assert seqs(a) == [1, 2]


def test_ephemeral_channels_in_a_batch_are_sent_unstored() -> None:
    a, t = f"notes:{unique()}", f"typing:{unique()}"
    events = send_events([(t, "typing", 1), (a, "e", 1)])
    assert [e.seq for e in events] == [None, 1]
    assert seqs(t) == []


def test_empty_batch() -> None:
    assert send_events([]) == []


async def test_asend_events_reaches_subscribers_in_order() -> None:
    a = f"notes:{unique()}"
    sub = await get_hub().subscribe((a,), 2000)
    events = await asend_events([(a, "e", n) for n in range(1500)])
    assert [e.seq for e in events] == list(range(1, 1501))
    await wait_until(lambda: len(sub) == 1500)
    got = [json.loads(e.wire.split(b"data: ", 1)[1].split(b"\n")[0]) for e in sub.drain()]
    assert got == list(range(1500))


async def test_async_code_must_use_asend_events() -> None:
    with pytest.raises(RuntimeError, match="asend_events"):
        send_events([(f"notes:{unique()}", "e", 1)])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs real concurrent writers")
def test_concurrent_batches_and_single_events_stay_gap_free() -> None:
    channels = [f"notes:{unique()}" for _ in range(5)]
    errors: list[BaseException] = []

    def batches(reverse: bool) -> None:
        try:
            order = channels[::-1] if reverse else channels
            for _ in range(20):
                send_events([(c, "e", 1) for c in order for _ in range(3)])
                send_event(order[0], "e", 2)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batches, args=(i % 2 == 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    for channel in channels:
        got = seqs(channel)
        assert got == list(range(1, len(got) + 1))
    assert sum(len(seqs(c)) for c in channels) == 4 * 20 * (15 + 1)


async def test_sync_send_events_from_a_thread() -> None:
    a = f"notes:{unique()}"
    sub = await get_hub().subscribe((a,), 10)
    await sync_to_async(send_events)([(a, "e", 1), (a, "e", 2)])
    await wait_until(lambda: len(sub) == 2)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the JSON-parameter path")
def test_a_large_batch_is_inserted_in_bounded_statements_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10,000 events of SSE_MAX_EVENT_BYTES would be one 650 MB parameter, and
    # PostgreSQL refuses any value over 1 GB: the rows go in a few statements
    # of bounded size, in one transaction, still in id order.
    from django.test.utils import CaptureQueriesContext

    from django_sse import batch

    monkeypatch.setattr(batch, "JSON_BYTES_PER_INSERT", 2000)
    channel = f"notes:{unique()}"
    items = [(channel, "e", "x" * 300 + str(i)) for i in range(30)]
    with CaptureQueriesContext(connection) as queries:
        events = send_events(items)
    inserts = [q for q in queries if "json_array_elements" in q["sql"]]
    assert 4 <= len(inserts) <= 8, len(inserts)
    assert all(len(q["sql"]) < 2000 + 1000 for q in inserts)
    rows = StoredEvent.objects.filter(channel=channel).order_by("pk")
    assert [r.seq for r in rows] == list(range(1, 31))
    assert [r.payload for r in rows] == [e.payload for e in events]
