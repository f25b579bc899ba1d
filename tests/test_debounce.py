"""Refresh hooks: a burst of saves on a channel becomes one debounced event."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_sse import debounce, hooks
from django_sse.testing import SentEvents, capture_events
from tests.testapp.models import Note

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


@pytest.fixture
def refresh_hook() -> Iterator[Callable[..., hooks.Hook]]:
    def register(**options: Any) -> hooks.Hook:
        options.setdefault("channels", ["notes", "notes-{priority}"])
        options.setdefault("refresh", True)
        return hooks.register(Note, **options)

    yield register
    hooks.unregister(Note)
    debounce.flush()


def wait_for(sent: SentEvents, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(sent) < count:
        assert time.monotonic() < deadline, f"{len(sent)} of {count} events: {list(sent)}"
        time.sleep(0.01)


def test_a_bulk_edit_sends_one_event_per_channel(refresh_hook: Callable[..., hooks.Hook]) -> None:
    with hooks.silenced():
        notes = Note.objects.bulk_create(Note(text=str(n), priority=n % 2) for n in range(1000))
    refresh_hook()
    with capture_events(flush_refreshes=False) as sent:
        with transaction.atomic():
            for note in Note.objects.all():
                note.text += "!"
                note.save()
        wait_for(sent, 3)  # the window ends by itself
        assert debounce.debouncer().pending() == 0
    assert len(notes) == 1000
    assert sorted(e.channel for e in sent) == ["notes", "notes-0", "notes-1"]
    event = sent.assert_sent("notes", "testapp.note.refresh", count=1)
    assert event.data == {"model": "testapp.note", "channel": "notes"}  # nothing of a row


def test_saves_that_each_commit_collapse_within_the_window(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    refresh_hook(refresh=30.0)  # longer than the test: only flush() ends it
    with capture_events() as sent:
        for n in range(50):
            Note.objects.create(text=str(n), priority=0)  # autocommit: 50 commits
        sent.assert_nothing_sent()  # the window is still open
        assert debounce.flush() == 2
    sent.assert_sent("notes", count=1)
    sent.assert_sent("notes-0", count=1)


def test_a_rollback_marks_nothing(refresh_hook: Callable[..., hooks.Hook]) -> None:
    refresh_hook()
    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="never")
        raise RuntimeError
    assert debounce.debouncer().pending() == 0
    with capture_events() as sent:
        assert debounce.flush() == 0
    sent.assert_nothing_sent()


def test_a_rolled_back_savepoint_keeps_the_outer_changes(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    refresh_hook(channels="notes-{priority}", refresh=30.0)
    with capture_events() as sent, transaction.atomic():
        Note.objects.create(text="kept", priority=1)
        with pytest.raises(RuntimeError), transaction.atomic():
            Note.objects.create(text="dropped", priority=2)
            raise RuntimeError
    assert [e.channel for e in sent] == ["notes-1"]


def test_changed_only_refreshes_only_on_a_change(refresh_hook: Callable[..., hooks.Hook]) -> None:
    with hooks.silenced():
        note = Note.objects.create(text="same")
    refresh_hook(channels="notes", refresh=30.0, changed_only=True)
    note = Note.objects.get(pk=note.pk)
    note.save()
    assert debounce.debouncer().pending() == 0
    note.text = "changed"
    note.save()
    assert debounce.debouncer().pending() == 1


def test_the_window_is_the_setting(refresh_hook: Callable[..., hooks.Hook]) -> None:
    refresh_hook(channels="notes")
    with override_settings(SSE_REFRESH_DEBOUNCE=30.0), capture_events() as sent:
        Note.objects.create(text="a")
        assert debounce.debouncer().pending() == 1
        sent.assert_nothing_sent()
        debounce.flush()
    sent.assert_sent("notes", count=1)


def test_a_custom_event_name(refresh_hook: Callable[..., hooks.Hook]) -> None:
    refresh_hook(channels="notes", event="{app_label}.{model}s.changed", refresh=30.0)
    with capture_events() as sent:
        Note.objects.create(text="a")
        debounce.flush()
    sent.assert_sent("notes", "testapp.notes.changed")


@override_settings(DEBUG=True)  # a broken hook raises while developing
def test_a_bad_channel_raises_at_the_save(refresh_hook: Callable[..., hooks.Hook]) -> None:
    refresh_hook(channels="unregistered-{priority}")
    with pytest.raises(ValueError, match="matches no registered channel"):
        Note.objects.create(text="a")
    assert debounce.debouncer().pending() == 0


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"refresh": True, "fields": ["text"]}, TypeError, "sends no payload"),
        ({"refresh": True, "payload": lambda n, a: {}}, TypeError, "sends no payload"),
        ({"refresh": 0}, ValueError, "more than 0"),
        ({"refresh": -1.0}, ValueError, "more than 0"),
        ({"refresh": 61}, ValueError, "at most 60"),
        ({"refresh": "0.5"}, TypeError, "True or seconds"),
        ({"refresh": True, "event": "stream-{action}"}, ValueError, "reserved"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        hooks.register(Note, channels="notes", **options)
    assert hooks.hooks_for(Note) == []


def test_a_refresh_hook_is_no_decorator(refresh_hook: Callable[..., hooks.Hook]) -> None:
    hook = refresh_hook()
    with pytest.raises(TypeError, match="sends no payload"):
        hook(lambda note, action: {})


def test_capture_events_flushes_the_refreshes(refresh_hook: Callable[..., hooks.Hook]) -> None:
    refresh_hook(channels="notes", refresh=30.0)
    Note.objects.create(text="before the block")
    with capture_events() as sent:
        assert debounce.debouncer().pending() == 0  # sent, and not counted
        with transaction.atomic():
            Note.objects.create(text="a")
            Note.objects.create(text="b")
        sent.assert_nothing_sent()  # the window is open
    sent.assert_sent("notes", "testapp.note.refresh", count=1)
    with capture_events(flush_refreshes=False) as sent:
        Note.objects.create(text="c")
    sent.assert_nothing_sent()
    assert debounce.debouncer().pending() == 1


@pytest.mark.django_db(transaction=False)
def test_run_on_commit_and_the_refreshes_in_a_transaction_that_never_commits(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    refresh_hook(channels="notes", refresh=30.0)
    with capture_events(run_on_commit=True) as sent:
        Note.objects.create(text="a")
        Note.objects.create(text="b")
    sent.assert_sent("notes", "testapp.note.refresh", count=1)


async def test_capture_events_flushes_in_async_code(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    refresh_hook(channels="notes", refresh=30.0)
    with capture_events() as sent:
        await Note.objects.acreate(text="a")
        await Note.objects.acreate(text="b")
        sent.assert_nothing_sent()
    sent.assert_sent("notes", "testapp.note.refresh", count=1)


def test_a_transaction_marks_each_channel_once(refresh_hook: Callable[..., hooks.Hook]) -> None:
    from django.db import connection

    refresh_hook(refresh=0.05)
    with capture_events(flush_refreshes=False) as sent:
        with transaction.atomic():
            for n in range(100):
                Note.objects.create(text=str(n), priority=n % 2)
                # Other on-commit work (other hooks' events, one per save) that
                # outlasts the window when the commit runs it: 100 x 5 ms.
                transaction.on_commit(lambda: time.sleep(0.005))
            markers = len(connection.run_on_commit) - 100
        wait_for(sent, 3)
        assert debounce.debouncer().pending() == 0
    assert markers == 3  # notes, notes-0, notes-1: not one per save
    assert sorted(e.channel for e in sent) == ["notes", "notes-0", "notes-1"]


def test_a_marker_dropped_with_a_savepoint_is_made_again(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    refresh_hook(channels="notes-{priority}", refresh=30.0)
    with capture_events() as sent, transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            Note.objects.create(text="dropped", priority=1)
            raise RuntimeError
        Note.objects.create(text="kept", priority=1)
    assert [e.channel for e in sent] == ["notes-1"]


def test_the_window_thread_heals_a_connection_the_database_dropped(
    refresh_hook: Callable[..., hooks.Hook],
) -> None:
    from django.db import connection

    from django_sse import capture
    from tests.conftest import PG_ADMIN
    from tests.test_connections import backend_pid, terminate

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL, which can drop a connection from outside")
    killed: list[int] = []

    def gone(pid: int) -> None:
        import psycopg

        deadline = time.monotonic() + 10
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            query = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
            while admin.execute(query, [pid]).fetchone():
                assert time.monotonic() < deadline, f"backend {pid} still alive"
                time.sleep(0.01)

    def kill_after_the_first(event: Any) -> None:
        # In the window thread, after its first event was stored: its
        # connection dies (as in a database restart or failover) mid-batch.
        if not killed:
            killed.append(backend_pid())
            terminate(killed[0])
            gone(killed[0])

    refresh_hook(refresh=0.05)
    stop = capture.watch(kill_after_the_first)
    windows = debounce.debouncer()
    try:
        with capture_events(flush_refreshes=False) as sent:
            # Hold the thread back until all three windows are due, so that it
            # sends them in one batch, on one connection.
            with windows._sending:
                with transaction.atomic():
                    Note.objects.create(text="a", priority=0)
                    Note.objects.create(text="b", priority=1)
                deadline = time.monotonic() + 10
                while any(w.due > time.monotonic() for w in list(windows._windows.values())):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            wait_for(sent, 3)
    finally:
        stop()
    assert killed
    assert sorted(e.channel for e in sent) == ["notes", "notes-0", "notes-1"]


def test_e070_when_the_window_setting_is_too_long() -> None:
    from django_sse.checks import check_refresh_window

    assert check_refresh_window() == []
    with override_settings(SSE_REFRESH_DEBOUNCE=300):
        [message] = check_refresh_window()
    assert message.id == "django_sse.E070"
    assert "more than 60" in message.msg and "at most 60" in str(message.hint)
    with override_settings(SSE_REFRESH_DEBOUNCE=60):
        assert check_refresh_window() == []
    with override_settings(SSE_REFRESH_DEBOUNCE="slow"):
        assert check_refresh_window() == []  # the type is E003's
