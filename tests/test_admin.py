"""Admin actions through the Django test client: notify users, broadcast objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from django_sse.models import StoredEvent
from tests.sse_client import wait_until
from tests.testapp.models import Note, Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]

USERS = "/admin/auth/user/"
TICKETS = "/admin/testapp/ticket/"


#: What a kept notification adds to the event (tests/test_inbox.py checks them).
INBOX_KEYS = {"id", "created", "read_at", "actor", "target", "unread"}


def payloads(channel: str) -> list[tuple[str, Any]]:
    rows = StoredEvent.objects.filter(channel=channel).order_by("seq")
    out = [(row.name, json.loads(row.payload)) for row in rows]
    return [
        (name, {k: v for k, v in p.items() if k not in INBOX_KEYS} if isinstance(p, dict) else p)
        for name, p in out
    ]


def staff_client(*perms: str, superuser: bool = False, username: str = "admin") -> Client:
    User = get_user_model()
    user = User.objects.create(username=username, is_staff=True, is_superuser=superuser)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_send_notification_shows_a_form_then_notifies_each_selected_user() -> None:
    client = staff_client(superuser=True)
    ann, bob = (get_user_model().objects.create(username=n) for n in ("ann", "bob"))
    selected = {"action": "send_notification", "_selected_action": [ann.pk, bob.pk]}
    form = client.post(USERS, selected)
    assert form.status_code == 200
    assert b'name="message"' in form.content and b"goes to 2 users" in form.content
    assert StoredEvent.objects.count() == 0

    invalid = client.post(USERS, {**selected, "apply": "Send", "level": "info"})
    assert invalid.status_code == 200 and b"This field is required" in invalid.content

    done = client.post(
        USERS,
        {
            **selected,
            "apply": "Send",
            "message": "Maintenance at 18:00",
            "level": "warning",
            "url": "/status/",
        },
        follow=True,
    )
    assert done.status_code == 200
    assert "Sent a notification to 2 users." in messages_of(done)
    expected = {"message": "Maintenance at 18:00", "level": "warning", "url": "/status/"}
    for user in (ann, bob):
        assert payloads(f"user:{user.pk}") == [("notification", expected)]


def test_send_notification_needs_the_change_permission() -> None:
    client = staff_client("auth.view_user")
    ann = get_user_model().objects.create(username="ann")
    page = client.get(USERS)
    assert page.status_code == 200 and b"send_notification" not in page.content
    client.post(
        USERS,
        {
            "action": "send_notification",
            "_selected_action": [ann.pk],
            "apply": "Send",
            "message": "x",
            "level": "info",
        },
    )
    assert StoredEvent.objects.filter(channel=f"user:{ann.pk}").count() == 0

    allowed = staff_client("auth.view_user", "auth.change_user", username="editor")
    assert b"send_notification" in allowed.get(USERS).content


def test_broadcast_state_sends_each_selected_object_through_its_hooks() -> None:
    client = staff_client("testapp.view_ticket", "testapp.change_ticket")
    a, b = Ticket.objects.create(title="a"), Ticket.objects.create(title="b")
    Ticket.objects.filter(pk=a.pk).update(status="closed")  # no signal, no event
    response = client.post(
        TICKETS, {"action": "broadcast_state", "_selected_action": [a.pk, b.pk]}, follow=True
    )
    assert "Broadcast 2 tickets as 2 event(s)." in messages_of(response)
    assert payloads(f"ticket:{a.pk}")[-1] == (
        "testapp.ticket.updated",
        {"pk": a.pk, "title": "a", "status": "closed", "owner": None},
    )
    assert [name for name, _ in payloads(f"ticket:{b.pk}")] == [
        "testapp.ticket.created",
        "testapp.ticket.updated",
    ]


def test_broadcast_state_needs_the_change_permission_and_a_hook() -> None:
    viewer = staff_client("testapp.view_ticket", "testapp.view_note", "testapp.change_note")
    ticket = Ticket.objects.create(title="a")
    assert b"broadcast_state" not in viewer.get(TICKETS).content
    viewer.post(TICKETS, {"action": "broadcast_state", "_selected_action": [ticket.pk]})
    assert len(payloads(f"ticket:{ticket.pk}")) == 1  # only "created"

    note = Note.objects.create(text="unhooked")
    response = viewer.post(
        "/admin/testapp/note/",
        {"action": "broadcast_state", "_selected_action": [note.pk]},
        follow=True,
    )
    assert "No hooks are registered for notes: nothing was sent." in messages_of(response)


async def test_a_staff_edit_in_the_change_form_reaches_an_open_stream_live() -> None:
    from asgiref.sync import sync_to_async

    from django_sse.hub import get_hub

    def setup() -> tuple[Client, Ticket]:
        return staff_client(superuser=True), Ticket.objects.create(title="Printer")

    client, ticket = await sync_to_async(setup)()
    sub = await get_hub().subscribe((f"ticket:{ticket.pk}",), 10)
    response = await sync_to_async(client.post)(
        f"{TICKETS}{ticket.pk}/change/", {"title": "Printer", "status": "fixed", "owner": ""}
    )
    assert response.status_code == 302
    await wait_until(lambda: len(sub) == 1)
    [event] = sub.drain()
    assert b"event: testapp.ticket.updated\n" in event.wire
    assert b'"status":"fixed"' in event.wire


def notification_post(client: Client, user: Any, **fields: str) -> Any:
    body = {"action": "send_notification", "_selected_action": [user.pk], "apply": "Send"}
    return client.post(USERS, {**body, "message": "m", "level": "info", **fields}, follow=True)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "\\\\evil.example/",
        "/\\evil.example/",
        "https://evil.example/login",
        "http://testserver@evil.example/",
        "https:evil.example",
        "http:///evil.example",
    ],
)
def test_the_notification_form_refuses_unsafe_links(url: str) -> None:
    client = staff_client(superuser=True)
    ann = get_user_model().objects.create(username="ann")
    response = notification_post(client, ann, url=url)
    assert (response.status_code == 200 and b"is not safe" in response.content) or (
        b"contains whitespace" in response.content
    ), url
    assert StoredEvent.objects.count() == 0


def test_the_notification_form_offers_every_level_and_takes_links_on_this_site() -> None:
    client = staff_client(superuser=True)
    ann = get_user_model().objects.create(username="ann")
    form = client.post(USERS, {"action": "send_notification", "_selected_action": [ann.pk]})
    for level in ("debug", "info", "success", "warning", "error"):
        assert f'value="{level}"'.encode() in form.content
    for url in ("/tickets/42/", "?page=2", "http://testserver/t/1/"):
        response = notification_post(client, ann, url=url, level="debug")
        assert "Sent a notification to 1 user." in messages_of(response), url
    assert [data["url"] for _, data in payloads(f"user:{ann.pk}")] == [
        "/tickets/42/",
        "?page=2",
        "http://testserver/t/1/",
    ]
    assert {data["level"] for _, data in payloads(f"user:{ann.pk}")} == {"debug"}


def test_a_failing_channel_template_is_a_message_and_sends_nothing() -> None:
    from django_sse import hooks

    def channels_of(note: Note) -> str:
        if note.priority == 2:
            raise AttributeError("'Note' object has no attribute 'owner'")
        return "notes"

    hooks.register(Note, channels=channels_of, fields=["text"])
    try:
        client = staff_client(superuser=True)
        with hooks.silenced():
            notes = [Note.objects.create(text=str(n), priority=n) for n in (1, 2, 3)]
        response = client.post(
            "/admin/testapp/note/",
            {"action": "broadcast_state", "_selected_action": [n.pk for n in notes]},
            follow=True,
        )
    finally:
        hooks.unregister(Note)
    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith("Nothing was sent: AttributeError: ")
    assert StoredEvent.objects.count() == 0  # not even the objects before the failing one


def test_notify_users_mixin_on_another_model_answers_with_a_message() -> None:
    from django.contrib import admin
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.test import RequestFactory

    from django_sse.admin import NotifyUsersMixin

    class NoteAdmin(NotifyUsersMixin, admin.ModelAdmin):  # type: ignore[type-arg]
        pass

    request = RequestFactory().post(
        "/", {"apply": "Send", "message": "m", "level": "info", "url": ""}
    )
    request._messages = CookieStorage(request)  # type: ignore[attr-defined]
    note = Note.objects.create(text="not a user")
    result = NoteAdmin(Note, admin.AdminSite()).send_notification(
        request, Note.objects.filter(pk=note.pk)
    )
    assert result is None
    [message] = [str(m) for m in request._messages]  # type: ignore[attr-defined]
    assert message.startswith("Nothing was sent: ")
    assert StoredEvent.objects.count() == 0
