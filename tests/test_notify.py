"""notify() and anotify(): a notification event on each user's channel."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import transaction

from django_sse import anotify, notify, user_channel
from django_sse.models import StoredEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


#: What a kept notification adds to the event (tests/test_inbox.py checks them).
INBOX_KEYS = {"id", "created", "read_at", "actor", "target", "unread"}


def notifications(user: Any) -> list[dict[str, Any]]:
    rows = StoredEvent.objects.filter(channel=user_channel(user)).order_by("seq")
    assert {row.name for row in rows} <= {"notification"}
    payloads = [json.loads(row.payload) for row in rows]
    return [{k: v for k, v in p.items() if k not in INBOX_KEYS} for p in payloads]


def make_users(*names: str) -> list[Any]:
    return [get_user_model().objects.create(username=name) for name in names]


def test_notify_one_user_with_level_url_and_extra() -> None:
    [ann] = make_users("ann")
    events = notify(ann, "Your ticket was closed", level="success", url="/t/1/", ticket=1)
    assert [e.channel for e in events] == [f"user:{ann.pk}"]
    assert notifications(ann) == [
        {"message": "Your ticket was closed", "level": "success", "url": "/t/1/", "ticket": 1}
    ]


def test_notify_a_list_or_a_queryset_reaches_each_user_once() -> None:
    ann, bob = make_users("ann", "bob")
    notify([ann, bob], "hello")
    notify(get_user_model().objects.filter(username="bob"), "only bob")
    assert notifications(ann) == [{"message": "hello", "level": "info", "url": None}]
    assert [n["message"] for n in notifications(bob)] == ["hello", "only bob"]


def test_notify_follows_the_transaction() -> None:
    [ann] = make_users("ann")
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(ann, "rolled back")
        raise RuntimeError
    assert notifications(ann) == []
    with transaction.atomic():
        [event] = notify(ann, "committed")
        # Kept in the transaction (the item and its event commit together),
        # published once it commits.
        assert event.seq == 1
    assert [n["message"] for n in notifications(ann)] == ["committed"]


def test_notify_refuses_anonymous_users_and_bad_levels() -> None:
    [ann] = make_users("ann")
    with pytest.raises(ValueError, match="authenticated"):
        notify(AnonymousUser(), "x")
    with pytest.raises(ValueError, match="level"):
        notify(ann, "x", level="")
    with pytest.raises(TypeError, match="not JSON serializable"):
        notify(ann, "x", when=object())
    assert notifications(ann) == []


async def test_anotify_accepts_a_queryset() -> None:
    ann, bob = await sync_to_async(make_users)("ann", "bob")
    events = await anotify(get_user_model().objects.order_by("pk"), "async", level="warning")
    assert [e.channel for e in events] == [f"user:{ann.pk}", f"user:{bob.pk}"]
    got = await sync_to_async(notifications)(bob)
    assert got == [{"message": "async", "level": "warning", "url": None}]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "//evil.example/x",
        "\\\\evil.example/x",
        "https://evil.example/x",
        "vbscript:msgbox(1)",
        "\x01//evil.example",
        "",
    ],
)
def test_notify_refuses_unsafe_urls(url: str) -> None:
    [ann] = make_users("ann")
    with pytest.raises(ValueError, match="notification url"):
        notify(ann, "x", url=url)
    assert notifications(ann) == []


def test_notify_takes_relative_urls_and_urls_on_allowed_hosts() -> None:
    from django.test import override_settings

    [ann] = make_users("ann")
    with override_settings(ALLOWED_HOSTS=[".example.com", "*"]):
        notify(ann, "x", url="https://app.example.com:8443/t/1/")
        notify(ann, "x", url="/t/2/?a=b#c")
        with pytest.raises(ValueError, match="ALLOWED_HOSTS"):
            notify(ann, "x", url="https://example.org/")  # "*" is not "every host is ours"
    assert [n["url"] for n in notifications(ann)] == [
        "https://app.example.com:8443/t/1/",
        "/t/2/?a=b#c",
    ]


def test_notify_takes_request_user_behind_its_lazy_object() -> None:
    from django.utils.functional import SimpleLazyObject

    user = get_user_model().objects.create_user("lazy-one")
    # What request.user is in a view: a SimpleLazyObject, which looks iterable.
    [event] = notify(SimpleLazyObject(lambda: user), "hello")
    assert event.channel == user_channel(user)
