"""Check ``django_sse.W080``: the event store on SQLite without write-ahead
logging. Decided from the settings and the file's header, with no connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_sse.sqlite_checks import RECOMMENDED, check_sqlite_wal


def sqlite(name: str, **options: Any) -> dict[str, Any]:
    database: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if options:
        database["OPTIONS"] = options
    return {"default": database}


def messages(databases: dict[str, Any], **extra: Any) -> list[str]:
    # Django warns that DATABASES overrides do not reach open connections: the
    # check reads the setting, not a connection, so that is fine here.
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases, **extra),
    ):
        return [str(m.id) for m in check_sqlite_wal()]


def test_the_test_project_passes() -> None:
    assert check_sqlite_wal() == []


def test_a_sqlite_file_without_wal_warns_with_the_pragma_to_add(tmp_path: Path) -> None:
    with (
        pytest.warns(UserWarning),
        override_settings(DATABASES=sqlite(str(tmp_path / "new.sqlite3"))),
    ):
        [message] = check_sqlite_wal()
    assert message.id == "django_sse.W080"
    assert RECOMMENDED in str(message.hint) and "init_command" in str(message.hint)


def test_a_file_with_the_rollback_journal_warns(tmp_path: Path) -> None:
    path = tmp_path / "delete.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("CREATE TABLE t (x)")
    assert messages(sqlite(str(path))) == ["django_sse.W080"]
    # An init_command that sets something else is not WAL either.
    assert messages(sqlite(str(path), init_command="PRAGMA synchronous=OFF;")) == [
        "django_sse.W080"
    ]


@pytest.mark.parametrize(
    "init",
    [RECOMMENDED, "pragma JOURNAL_MODE = 'wal'", "PRAGMA foreign_keys=ON; PRAGMA journal_mode=WAL"],
)
def test_wal_in_the_init_command_passes(tmp_path: Path, init: str) -> None:
    assert messages(sqlite(str(tmp_path / "db.sqlite3"), init_command=init)) == []


def test_a_file_already_in_wal_mode_passes(tmp_path: Path) -> None:
    # WAL persists in the file: a project that switched it once, or in a
    # connection_created receiver, is not warned.
    path = tmp_path / "wal.sqlite3"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        db.execute("CREATE TABLE t (x)")
    assert messages(sqlite(str(path))) == []


def test_no_warning_off_sqlite_in_memory_or_without_the_database_store(tmp_path: Path) -> None:
    postgres = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}}
    assert messages(postgres) == []
    assert messages(sqlite(":memory:")) == []
    assert messages(sqlite("file:memdb1?mode=memory&cache=shared")) == []
    assert messages(sqlite(str(tmp_path / "db.sqlite3")), SSE_STORE=None) == []


def test_an_unreadable_or_odd_name_does_not_crash_the_check(tmp_path: Path) -> None:
    # A NUL in a path is a ValueError, not an OSError; a directory and a
    # missing parent are OSErrors. The check warns, it does not crash.
    assert messages(sqlite("bad\x00name.sqlite3")) == ["django_sse.W080"]
    assert messages(sqlite(str(tmp_path))) == ["django_sse.W080"]
    assert messages(sqlite(str(tmp_path / "missing" / "db.sqlite3"))) == ["django_sse.W080"]
    assert messages({"default": {"NAME": "x"}}) == []  # no ENGINE: Django's to report


def test_the_check_reads_the_database_the_store_writes_to(tmp_path: Path) -> None:
    from django_sse import store as store_module

    path = tmp_path / "events.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
    wal_default = sqlite(str(path))["default"]
    journal_events = sqlite(str(tmp_path / "journal.sqlite3"))["default"]

    class OnEvents(store_module.DatabaseStore):
        def __init__(self) -> None:
            super().__init__(using="events")

    store_module._stores.clear()
    try:
        with override_settings(SSE_STORE=f"{__name__}.OnEventsStore"):
            globals()["OnEventsStore"] = OnEvents
            databases = {"default": wal_default, "events": journal_events}
            assert messages(databases) == ["django_sse.W080"]
            databases = {"default": journal_events, "events": wal_default}
            assert messages(databases) == []
    finally:
        globals().pop("OnEventsStore", None)
        store_module._stores.clear()
