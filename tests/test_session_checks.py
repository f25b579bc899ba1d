"""The session check in-process: what it decides, for which engine, at what cost.
The servers' behaviour is in tests/test_session_revocation.py."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from django_sse import sessions
from django_sse.models import SessionRotation
from django_sse.stream import FINAL_REASONS

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(username: str) -> tuple[Any, str]:
    user, _ = get_user_model().objects.get_or_create(username=username)
    client = Client()
    client.force_login(user)
    return user, client.session.session_key  # type: ignore[return-value]


def reason(key: str | None, user: Any) -> str | None:
    return sessions.verify({(key, str(user.pk))})[(key, str(user.pk))][0]


def store(key: str | None = None) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


def test_a_valid_session_passes_and_each_change_has_its_reason() -> None:
    user, key = logged_in("v1")
    assert reason(key, user) is None
    user.set_password("changed-1")
    user.save()
    assert reason(key, user) == sessions.PASSWORD_CHANGED
    _, other = logged_in("v1")
    Session.objects.filter(session_key=other).delete()
    assert reason(other, user) == sessions.SESSION_ENDED
    user.delete()
    assert reason(None, user) == sessions.USER_DELETED
    assert {sessions.PASSWORD_CHANGED, sessions.SESSION_ENDED, sessions.USER_DELETED} <= (
        FINAL_REASONS
    )


def test_a_rotated_key_is_never_followed_its_streams_reconnect() -> None:
    user, key = logged_in("v2")
    session = store(key)
    session.load()
    session.cycle_key()  # what update_session_auth_hash() does first
    new = session.session_key
    assert new != key
    # The old key's streams close, and their client reconnects with its cookie.
    assert reason(key, user) == sessions.SESSION_CHANGED
    assert sessions.SESSION_CHANGED not in FINAL_REASONS
    assert sessions.verify({(key, str(user.pk))})[(key, str(user.pk))][1] == key
    assert sessions.check_session(key, str(user.pk))[:2] == (sessions.SESSION_CHANGED, key)
    assert reason(new, user) is None
    # Neither raw key is stored: only the old one's keyed hash.
    assert not SessionRotation.objects.filter(old=key).exists()
    row = SessionRotation.objects.get(old=sessions.digest(key))
    assert new not in (row.old, row.new_key)


def test_a_delete_after_another_requests_login_is_not_a_rotation() -> None:
    # A login on one request creates a row with the same data as the user's
    # other session; deleting that one on the next request of the same
    # thread must not pass for a rotation.
    user, key = logged_in("v3")
    twin = store()
    twin.update(store(key).load())
    twin.create()
    sessions.on_request_started()
    Session.objects.filter(session_key=key).delete()
    assert reason(key, user) == sessions.SESSION_ENDED
    assert not SessionRotation.objects.exists()


def test_an_expired_session_closes_as_expired() -> None:
    from django.utils import timezone

    user, key = logged_in("v4")
    Session.objects.filter(session_key=key).update(expire_date=timezone.now())
    assert reason(key, user) == sessions.SESSION_EXPIRED
    assert sessions.SESSION_EXPIRED not in FINAL_REASONS


def test_a_fallback_secret_still_verifies() -> None:
    user, key = logged_in("v5")
    with override_settings(SECRET_KEY="a-new-secret", SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert reason(key, user) is None
    with override_settings(SECRET_KEY="a-new-secret"):
        # Without the fallback the data no longer decodes: Django logs it out too.
        assert reason(key, user) == sessions.SESSION_ENDED


@override_settings(
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
)
def test_the_cache_engine_cannot_tell_a_rotation_so_the_client_reconnects() -> None:
    user, key = logged_in("v6")
    assert reason(key, user) is None
    store(key).delete()
    assert reason(key, user) == sessions.SESSION_CHANGED
    assert sessions.SESSION_CHANGED not in FINAL_REASONS


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_signed_cookie_sessions_are_not_checked_but_users_are() -> None:
    user, _ = get_user_model().objects.get_or_create(username="v7")
    assert reason("anything", user) is None
    user.delete()
    assert reason("anything", user) == sessions.USER_DELETED


def test_one_query_per_kind_whatever_the_number_of_sessions(
    django_assert_max_num_queries: Any,
) -> None:
    pairs = set()
    for n in range(60):
        user, key = logged_in(f"many{n % 20}")
        pairs.add((key, str(user.pk)))
    with django_assert_max_num_queries(2):
        results = sessions.verify(pairs)
    assert len(results) == 60 and all(r[0] is None for r in results.values())


def test_the_check_reads_only_the_users_columns_it_needs_and_hashes_once() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user, key = logged_in("cols")
    user.email = "secret@example.com"
    user.save()
    sessions._hashes.clear()
    with CaptureQueriesContext(connection) as queries:
        assert reason(key, user) is None
    [sql] = [q["sql"] for q in queries.captured_queries if "auth_user" in q["sql"]]
    selected = sql.split(" FROM ")[0]
    for column in ("password", "is_active", '"id"'):
        assert column in selected, sql
    for column in ("email", "username", "last_login", "first_name"):
        assert column not in selected, sql  # before: every column of every user
    # The hash is kept across checks while the password is unchanged.
    assert len(sessions._hashes) == 1
    assert reason(key, user) is None and len(sessions._hashes) == 1
    user.set_password("changed-cols")
    user.save()
    assert reason(key, user) == sessions.PASSWORD_CHANGED


async def test_session_check_logs_a_db_outage_once_not_every_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage of the database the check reads (the query raises as a lost
    PostgreSQL connection does): one warning with its traceback, then one
    info line when the check works again."""
    import asyncio
    import logging

    from django.db.utils import OperationalError

    from django_sse import dbthreads

    down = True

    async def run(*args: Any, **kwargs: Any) -> Any:
        if down:
            raise OperationalError("server closed the connection unexpectedly")
        return {}

    class Sub:
        closed = False
        owner = "1"
        session_key = "k"

    class Hub:
        _subscriptions = {Sub()}

    monkeypatch.setattr(dbthreads, "run", run)
    with (
        override_settings(SSE_SESSION_CHECK_INTERVAL=0.05),
        caplog.at_level(logging.DEBUG, "django_sse"),
    ):
        task = asyncio.create_task(sessions.check_loop(Hub()))
        try:
            await asyncio.sleep(0.6)  # about a dozen checks during the outage
            down = False
            await asyncio.sleep(0.3)
        finally:
            task.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info, warnings  # before: one per check
    back = [r for r in caplog.records if r.levelno == logging.INFO and "again" in r.getMessage()]
    assert len(back) == 1, caplog.records
