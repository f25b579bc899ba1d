"""The database store, ids and positions (SQLite here; PostgreSQL in its own pass)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.template import Context, Template
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sse import current_position, send_event
from django_sse.checks import check_store
from django_sse.ids import MAX_STORED_CHANNELS, decode_position, encode_position
from django_sse.models import StoredEvent
from django_sse.store import DatabaseStore, get_store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]

CORS_UNSAFE = re.compile(r'["():<>?@\[\\\]{}\x00-\x1f\x7f]')


@pytest.fixture
def store() -> DatabaseStore:
    return DatabaseStore()


def test_sequences_start_at_one_per_channel_without_gaps(store: DatabaseStore) -> None:
    assert [store.append("a", "e", str(i)) for i in range(3)] == [1, 2, 3]
    assert store.append("b", "e", "x") == 1
    assert store.heads(["a", "b", "c"]) == {"a": 3, "b": 1, "c": 0}
    assert store.oldest(["a", "b", "c"]) == {"a": 1, "b": 1}


def test_read_after_positions_in_insertion_order(store: DatabaseStore) -> None:
    for channel in "abab":
        store.append(channel, "e", channel)
    records = store.read({"a": 1, "b": 0})
    assert [(r.channel, r.seq) for r in records] == [("b", 1), ("a", 2), ("b", 2)]
    assert len(store.read({"a": 0, "b": 0}, limit=2)) == 2
    assert store.read({}) == []


def test_prune_by_count_and_age_in_bulk(store: DatabaseStore) -> None:
    for i in range(6):
        store.append("a", "e", str(i))
        store.append("b", "e", str(i))
    StoredEvent.objects.filter(channel="b", seq__lte=2).update(
        created=timezone.now() - timedelta(days=2)
    )
    with override_settings(SSE_HISTORY_MAX_EVENTS=4, SSE_HISTORY_MAX_AGE=86400):
        with CaptureQueriesContext(connection) as queries:
            removed = store.prune()
    deletes = [q for q in queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) <= 3  # never one statement per row
    assert removed == 4
    assert store.oldest(["a", "b"]) == {"a": 3, "b": 3}
    assert store.heads(["a"]) == {"a": 6}  # numbering continues after pruning
    assert store.append("a", "e", "next") == 7


def test_publishers_prune_at_most_once_per_interval(store: DatabaseStore) -> None:
    with override_settings(SSE_HISTORY_MAX_EVENTS=2, SSE_HISTORY_PRUNE_INTERVAL=0.001):
        for i in range(5):
            store._last_prune = 0.0  # the interval has passed
            store.append("p", "e", str(i))
    assert StoredEvent.objects.filter(channel="p").count() == 2
    with override_settings(SSE_HISTORY_MAX_EVENTS=1, SSE_HISTORY_PRUNE_INTERVAL=3600):
        store.append("p", "e", "within the interval")  # no prune yet
    assert StoredEvent.objects.filter(channel="p").count() == 3


def test_sse_prune_command() -> None:
    for i in range(5):
        send_event("cmd", "e", i)
    out = StringIO()
    with override_settings(SSE_HISTORY_MAX_EVENTS=2):
        call_command("sse_prune", stdout=out)
    assert "Removed 3 stored event(s)" in out.getvalue()
    with override_settings(SSE_STORE=None), pytest.raises(CommandError, match="no history"):
        call_command("sse_prune")


def test_send_event_stores_on_commit_and_not_on_rollback() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        send_event("tx", "e", "rolled back")
        raise RuntimeError
    assert not StoredEvent.objects.filter(channel="tx").exists()
    with transaction.atomic():
        event = send_event("tx", "e", "kept")
        assert event.seq is None
        assert not StoredEvent.objects.filter(channel="tx").exists()
    stored = StoredEvent.objects.get(channel="tx")
    assert (stored.seq, stored.name, stored.payload) == (1, "e", '"kept"')
    assert send_event("tx", "e", {"n": 2}).seq == 2


def test_ephemeral_channels_and_no_store_keep_nothing() -> None:
    assert send_event("typing:room1", "typing", {"who": "a"}).seq is None
    with override_settings(SSE_STORE=None):
        assert send_event("public", "e", 1).seq is None
    assert not StoredEvent.objects.exists()


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite serializes all writers anyway")
def test_concurrent_appends_get_distinct_gap_free_numbers() -> None:
    store = get_store()
    assert store is not None
    seqs: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for i in range(25):
                seq = store.append("race", "e", str(i))
                with lock:
                    seqs.append(seq)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seqs) == list(range(1, 101))
    # Insertion (pk) order agrees with sequence order within the channel.
    ordered = list(StoredEvent.objects.filter(channel="race").order_by("pk").values_list("seq"))
    assert [s for (s,) in ordered] == list(range(1, 101))


def test_ids_round_trip_and_stay_short_and_cors_safe() -> None:
    channels = tuple(sorted(f"user:{i}" for i in range(MAX_STORED_CHANNELS)))
    positions = {c: 36**8 - 1 for c in channels}
    value = encode_position(channels, positions)
    assert len(value) <= 127 and value.isascii() and not CORS_UNSAFE.search(value)
    assert decode_position(value, channels) == positions
    assert decode_position(value, channels[:-1]) is None  # another set of channels
    for bad in ["", "x", value + "-1", value.upper(), "0" * 300, "abc-def"]:
        assert decode_position(bad, channels) is None


def test_current_position_and_template_tag() -> None:
    send_event("news:a", "e", 1)
    send_event("news:a", "e", 2)
    position = current_position(["news:a", "typing:x", "news:b"])
    assert decode_position(position, ("news:a", "news:b")) == {"news:a": 2, "news:b": 0}
    rendered = Template(
        '{% load django_sse %}{% sse_position "news:b" "news:a" as p %}[{{ p }}]'
    ).render(Context())
    assert rendered == f"[{position}]"
    assert current_position(["typing:x"]) == ""
    with override_settings(SSE_STORE=None):
        assert current_position(["news:a"]) == ""


def test_e004_and_e005() -> None:
    with override_settings(SSE_MAX_CHANNELS=MAX_STORED_CHANNELS + 1):
        assert [m.id for m in check_store()] == ["django_sse.E004"]
    with override_settings(SSE_MAX_CHANNELS=MAX_STORED_CHANNELS + 1, SSE_STORE=None):
        assert check_store() == []
    with override_settings(SSE_STORE="nowhere.Store"):
        [message] = check_store()
    assert message.id == "django_sse.E005" and message.hint


def test_prune_by_age_removes_a_prefix_of_each_channel_whatever_the_clocks(
    store: DatabaseStore,
) -> None:
    # Publishers' clocks differ: #2 was stamped by a clock two days behind #1's.
    for i in range(4):
        store.append("skew", "e", str(i))
    store.append("other", "e", "x")
    StoredEvent.objects.filter(channel="skew", seq=2).update(
        created=timezone.now() - timedelta(days=2)
    )
    with override_settings(SSE_HISTORY_MAX_EVENTS=100, SSE_HISTORY_MAX_AGE=86400):
        assert store.prune() == 2
    # What is left of a channel runs without a hole up to its head.
    assert list(
        StoredEvent.objects.filter(channel="skew").order_by("seq").values_list("seq", flat=True)
    ) == [3, 4]
    assert store.oldest(["skew", "other"]) == {"skew": 3, "other": 1}


def test_prune_is_one_statement_with_a_post_delete_receiver_connected(
    store: DatabaseStore,
) -> None:
    from django.db.models.signals import post_delete

    for _ in range(5):
        store.append("rx", "e", "payload" * 100)
    StoredEvent.objects.filter(channel="rx", seq__lte=3).update(
        created=timezone.now() - timedelta(days=2)
    )
    seen: list[object] = []

    def audit(sender: object, instance: object, **kwargs: object) -> None:
        seen.append(instance)  # another app's receiver, for every model

    post_delete.connect(audit, weak=False)
    try:
        with override_settings(SSE_HISTORY_MAX_EVENTS=4, SSE_HISTORY_MAX_AGE=86400):
            with CaptureQueriesContext(connection) as queries:
                removed = store.prune()
    finally:
        post_delete.disconnect(audit)
    assert removed == 3
    assert [q["sql"].split()[0].upper() for q in queries] == ["DELETE"], queries.captured_queries
    assert seen == []  # no row was loaded to send it
    assert store.oldest(["rx"]) == {"rx": 4}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL isolation levels")
@pytest.mark.parametrize("level", ["REPEATABLE_READ", "SERIALIZABLE"])
def test_appends_retry_serialization_failures_under_strict_isolation(
    level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    # Every thread's connection is made from this one settings dict.
    options = {
        **connection.settings_dict["OPTIONS"],
        "isolation_level": psycopg.IsolationLevel[level],
    }
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    connection.close()
    store = DatabaseStore()
    seqs: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def work() -> None:
        try:
            start.wait(10)
            for i in range(20):
                seq = store.append("iso", "e", str(i))
                with lock:
                    seqs.append(seq)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [], [(e, e.__cause__, getattr(e.__cause__, "sqlstate", None)) for e in errors]
    assert sorted(seqs) == list(range(1, 121))
    ordered = StoredEvent.objects.filter(channel="iso").order_by("pk").values_list("seq", flat=True)
    assert list(ordered) == list(range(1, 121))
    connection.close()


def test_a_publisher_whose_clock_runs_behind_does_not_age_fresh_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Events are stamped by the database, so one host two days behind cannot
    # make the prune (a per-channel prefix up to the newest old event) take
    # everything published around its event.
    from django_sse import store as store_module

    store = DatabaseStore()
    for i in range(3):
        store.append("public", "e", str(i))
    real_now = timezone.now
    monkeypatch.setattr(store_module.timezone, "now", lambda: real_now() - timedelta(days=2))
    store.append("public", "e", "skewed")
    monkeypatch.setattr(store_module.timezone, "now", real_now)
    store.append("public", "e", "after")
    with override_settings(SSE_HISTORY_MAX_AGE=86400, SSE_HISTORY_MAX_EVENTS=1000):
        assert store.prune() == 0
    assert list(StoredEvent.objects.filter(channel="public").values_list("seq", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]


def test_an_append_that_meets_a_locked_shared_cache_table_is_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite's shared cache (an in-memory database shared by threads) answers
    "database table is locked" at once, whatever the busy timeout: the append
    wrote nothing and runs again, as after a serialization failure."""
    import sqlite3

    from django.db.utils import OperationalError

    store = DatabaseStore()
    real = store._append
    failures = [2]

    def locked_twice(channel: str, name: str, payload: str) -> int:
        if failures[0]:
            failures[0] -= 1
            cause = sqlite3.OperationalError("database table is locked: django_sse_channelsequence")
            cause.sqlite_errorcode = sqlite3.SQLITE_LOCKED  # type: ignore[attr-defined]
            raise OperationalError(str(cause)) from cause
        return real(channel, name, payload)

    monkeypatch.setattr(store, "_append", locked_twice)
    first = store.append("a", "e", "{}")
    assert failures == [0]
    assert store.append("a", "e", "{}") == first + 1
    # Any other operational error is the caller's, at once.
    monkeypatch.setattr(
        store, "_append", lambda *a: (_ for _ in ()).throw(OperationalError("disk I/O error"))
    )
    with pytest.raises(OperationalError, match="disk I/O"):
        store.append("a", "e", "{}")
