"""Model hooks: events on save and delete, sent on commit (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.html import format_html
from rest_framework import serializers

from django_sse import hooks
from django_sse.models import StoredEvent
from tests.testapp.models import Comment, Note, Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def sent(channel: str) -> list[tuple[str, Any]]:
    """The events stored on ``channel``, oldest first, as (name, data)."""
    rows = StoredEvent.objects.filter(channel=channel).order_by("seq")
    return [(row.name, json.loads(row.payload)) for row in rows]


@pytest.fixture
def note_hook() -> Iterator[Callable[..., hooks.Hook]]:
    """Register hooks on Note for one test; all are removed afterwards."""

    def register(**options: Any) -> hooks.Hook:
        options.setdefault("channels", "notes")
        return hooks.register(Note, **options)

    yield register
    hooks.unregister(Note)


def test_created_updated_deleted_with_default_names_and_the_listed_fields() -> None:
    ticket = Ticket.objects.create(title="Printer")
    ticket.status = "closed"
    ticket.save()
    pk = ticket.pk
    ticket.delete()
    fields = {"pk": pk, "title": "Printer", "owner": None}
    assert sent(f"ticket:{pk}") == [
        ("testapp.ticket.created", {**fields, "status": "open"}),
        ("testapp.ticket.updated", {**fields, "status": "closed"}),
        ("testapp.ticket.deleted", {**fields, "status": "closed"}),
    ]


def test_rollback_sends_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        ticket = Ticket.objects.create(title="Never")
        raise RuntimeError
    assert sent(f"ticket:{ticket.pk}") == []


def test_nested_atomic_blocks_send_once_after_the_outer_commit() -> None:
    with transaction.atomic():
        with transaction.atomic():
            ticket = Ticket.objects.create(title="Nested")
        with transaction.atomic():
            ticket.status = "pending"
            ticket.save()
        try:
            with transaction.atomic():
                ticket.status = "rolled back"
                ticket.save()
                raise ValueError
        except ValueError:
            pass
        assert StoredEvent.objects.count() == 0  # nothing before the outer commit
    assert [(name, data["status"]) for name, data in sent(f"ticket:{ticket.pk}")] == [
        ("testapp.ticket.created", "open"),
        ("testapp.ticket.updated", "pending"),
    ]


def test_queryset_delete_sends_one_deleted_event_per_object() -> None:
    a, b = Ticket.objects.create(title="a"), Ticket.objects.create(title="b")
    Ticket.objects.filter(pk__in=[a.pk, b.pk]).delete()
    for ticket in (a, b):
        assert sent(f"ticket:{ticket.pk}")[-1] == (
            "testapp.ticket.deleted",
            {"pk": ticket.pk, "title": ticket.title, "status": "open", "owner": None},
        )


def test_decorated_payload_several_channels_and_only_the_chosen_actions() -> None:
    ticket = Ticket.objects.create(title="t")
    comment = Comment.objects.create(ticket=ticket, text="first")
    comment.text = "edited"
    comment.save()  # the hook only sends "created"
    expected = ("testapp.comment.created", {"pk": comment.pk, "text": "first", "ticket": ticket.pk})
    assert sent(f"ticket:{ticket.pk}")[-1] == expected
    assert sent("comments") == [expected]


def test_serializer_payload(note_hook: Callable[..., hooks.Hook]) -> None:
    class NoteSerializer(serializers.ModelSerializer[Note]):
        class Meta:
            model = Note
            fields = ["text", "priority"]

    note_hook(serializer=NoteSerializer)
    note = Note.objects.create(text="hello", priority=2)
    assert sent("notes") == [
        ("testapp.note.created", {"pk": note.pk, "text": "hello", "priority": 2})
    ]


def test_all_fields_when_asked_and_a_callable_for_channels(
    note_hook: Callable[..., hooks.Hook],
) -> None:
    note_hook(
        channels=lambda note: [f"notes-{note.priority}", "notes"],
        actions=["created"],
        fields="__all__",
    )
    note = Note.objects.create(text="x", priority=7, extra={"a": [1]})
    data = {"pk": note.pk, "id": note.pk, "text": "x", "priority": 7, "extra": {"a": [1]}}
    assert sent("notes-7") == sent("notes") == [("testapp.note.created", data)]


def test_custom_event_name_and_payload_function(note_hook: Callable[..., hooks.Hook]) -> None:
    note_hook(event="note-{action}", payload=lambda note, action: {"action": action})
    note = Note.objects.create(text="x")
    pk = note.pk
    note.delete()
    assert sent("notes") == [
        ("note-created", {"pk": pk, "action": "created"}),
        ("note-deleted", {"pk": pk, "action": "deleted"}),
    ]


def test_a_safestring_payload_is_sent_verbatim_and_a_plain_str_as_json(
    note_hook: Callable[..., hooks.Hook],
) -> None:
    @note_hook(actions=["created"])
    def fragment(note: Note, action: str) -> str:
        if note.text == "plain":
            return f"<li id='note-{note.pk}'>{note.text}</li>"
        return format_html("<li id='note-{}'>{}</li>", note.pk, note.text)

    marked = Note.objects.create(text="<b>")
    plain = Note.objects.create(text="plain")
    rows = list(StoredEvent.objects.filter(channel="notes").order_by("seq"))
    assert rows[0].payload == f"<li id='note-{marked.pk}'>&lt;b&gt;</li>"
    assert json.loads(rows[1].payload) == f"<li id='note-{plain.pk}'>plain</li>"
    assert "<" not in rows[1].payload


def test_changed_only_sends_the_changed_fields_and_nothing_without_a_change(
    note_hook: Callable[..., hooks.Hook],
) -> None:
    note_hook(fields=["text", "priority", "extra"], changed_only=True)
    note = Note.objects.create(text="a", priority=1)
    note.priority = 2
    note.save()
    note.save()  # no change: no event
    loaded = Note.objects.get(pk=note.pk)
    loaded.extra["k"] = "v"  # mutated in place still counts
    loaded.save()
    loaded.text, loaded.priority = "b", 3
    loaded.save(update_fields=["priority"])  # only what was saved
    loaded.save()  # now the text
    assert sent("notes") == [
        ("testapp.note.created", {"pk": note.pk, "text": "a", "priority": 1, "extra": {}}),
        ("testapp.note.updated", {"pk": note.pk, "priority": 2}),
        ("testapp.note.updated", {"pk": note.pk, "extra": {"k": "v"}}),
        ("testapp.note.updated", {"pk": note.pk, "priority": 3}),
        ("testapp.note.updated", {"pk": note.pk, "text": "b"}),
    ]


def test_only_changed_only_hooks_watch_instances_as_they_load(
    note_hook: Callable[..., hooks.Hook],
) -> None:
    from django.db.models.signals import post_init

    note_hook(fields=["text"])
    assert not post_init.has_listeners(Note)  # plain hooks cost nothing per instance
    note_hook(fields=["text"], changed_only=True, channels="notes2")
    assert post_init.has_listeners(Note)
    hooks.unregister(Note)
    assert not post_init.has_listeners(Note)


def test_silenced_suppresses_hooks_for_all_or_some_models() -> None:
    with hooks.silenced():
        quiet = Ticket.objects.create(title="quiet")
    with hooks.silenced(Comment):
        loud = Ticket.objects.create(title="loud")
        Comment.objects.create(ticket=loud, text="quiet")

    @hooks.silenced()
    def bulk_import() -> Ticket:
        return Ticket.objects.create(title="imported")

    imported = bulk_import()
    assert sent(f"ticket:{quiet.pk}") == []
    assert sent(f"ticket:{imported.pk}") == []
    assert [name for name, _ in sent(f"ticket:{loud.pk}")] == ["testapp.ticket.created"]
    assert sent("comments") == []


def test_send_for_after_update_and_bulk_create() -> None:
    with hooks.silenced():
        tickets = Ticket.objects.bulk_create([Ticket(title="b1"), Ticket(title="b2")])
    created = hooks.send_for(tickets, action="created")
    queryset = Ticket.objects.filter(pk__in=[t.pk for t in tickets])
    queryset.update(status="closed")
    updated = hooks.send_for(queryset)
    assert [e.name for e in created] == ["testapp.ticket.created"] * 2
    assert [e.name for e in updated] == ["testapp.ticket.updated"] * 2
    for ticket in tickets:
        assert [(n, d["status"]) for n, d in sent(f"ticket:{ticket.pk}")] == [
            ("testapp.ticket.created", "open"),
            ("testapp.ticket.updated", "closed"),
        ]


def _event_inserts(queries: CaptureQueriesContext) -> int:
    table = StoredEvent._meta.db_table
    return sum(
        1
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith("INSERT") and table in q["sql"]
    )


def test_a_save_sending_several_events_stores_them_in_one_statement() -> None:
    ticket = Ticket.objects.create(title="t")
    with CaptureQueriesContext(connection) as queries:
        comment = Comment.objects.create(ticket=ticket, text="first")  # two channels
    assert sent(f"ticket:{ticket.pk}")[-1][1]["pk"] == comment.pk
    assert sent("comments")[-1][1]["pk"] == comment.pk
    # One batch: not an append (two statements) per event.
    assert _event_inserts(queries) == 1, [q["sql"][:80] for q in queries.captured_queries]


def test_send_for_stores_every_event_in_one_transaction() -> None:
    with hooks.silenced():
        tickets = Ticket.objects.bulk_create([Ticket(title=f"t{i}") for i in range(30)])
    with CaptureQueriesContext(connection) as queries:
        events = hooks.send_for(tickets, action="created")
    assert [e.seq for e in events] == [1] * 30
    assert _event_inserts(queries) == 1
    for ticket in tickets:
        assert [n for n, _ in sent(f"ticket:{ticket.pk}")] == ["testapp.ticket.created"]


def test_send_for_inside_atomic_sends_on_commit_and_nothing_on_rollback() -> None:
    with hooks.silenced():
        kept, dropped = Ticket.objects.bulk_create([Ticket(title="kept"), Ticket(title="gone")])
    with transaction.atomic():
        pending = hooks.send_for([kept])
        assert [e.seq for e in pending] == [None]
        assert sent(f"ticket:{kept.pk}") == []
    assert [n for n, _ in sent(f"ticket:{kept.pk}")] == ["testapp.ticket.updated"]
    with pytest.raises(RuntimeError), transaction.atomic():
        hooks.send_for([dropped])
        raise RuntimeError
    assert sent(f"ticket:{dropped.pk}") == []


def test_a_broken_hook_does_not_cost_the_other_hooks_of_the_save(
    note_hook: Callable[..., hooks.Hook], caplog: pytest.LogCaptureFixture
) -> None:
    note_hook(payload=lambda note, action: {"bad": object()})
    note_hook(fields=["text"], channels="notes2")
    with caplog.at_level(logging.ERROR, logger="django_sse"):
        note = Note.objects.create(text="kept")
    assert sent("notes") == []
    assert sent("notes2") == [("testapp.note.created", {"pk": note.pk, "text": "kept"})]
    assert len([r for r in caplog.records if r.name == "django_sse"]) == 1


def test_unserializable_payload_raises_with_debug(note_hook: Callable[..., hooks.Hook]) -> None:
    note_hook(payload=lambda note, action: {"bad": object()})
    with override_settings(DEBUG=True), pytest.raises(TypeError, match="not JSON serializable"):
        Note.objects.create(text="x")


def test_unserializable_payload_is_logged_without_breaking_the_save(
    note_hook: Callable[..., hooks.Hook], caplog: pytest.LogCaptureFixture
) -> None:
    note_hook(payload=lambda note, action: {"bad": object()})
    with caplog.at_level(logging.ERROR, logger="django_sse"):
        note = Note.objects.create(text="kept")
    assert Note.objects.filter(pk=note.pk, text="kept").exists()
    assert sent("notes") == []
    [record] = [r for r in caplog.records if r.name == "django_sse"]
    assert "testapp.Note" in record.getMessage() and f"pk={note.pk}" in record.getMessage()


def test_registration_errors() -> None:
    with pytest.raises(TypeError, match="model class"):
        hooks.register("testapp.Note", channels="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="actions"):
        hooks.register(Note, channels="x", actions=["saved"])
    with pytest.raises(TypeError, match="only one of fields, serializer"):
        hooks.register(Note, channels="x", fields=["text"], serializer=object)
    with pytest.raises(TypeError, match="list of names or '__all__'"):
        hooks.register(Note, channels="x", fields="text")
    for event in ("stream-closed", "stream-{action}", "snapshot", "Snapshot"):
        with pytest.raises(ValueError, match="reserved for the server"):
            hooks.register(Note, channels="x", fields=["text"], event=event)
    with pytest.raises(ValueError, match="control character"):
        hooks.register(Note, channels="x", fields=["text"], event="a\n{action}")
    with pytest.raises(ValueError, match="may use only"):
        hooks.register(Note, channels="x", fields=["text"], event="{colour}")
    assert hooks.hooks_for(Note) == []


async def test_asave_and_adelete_send_their_events() -> None:
    from asgiref.sync import sync_to_async

    ticket = Ticket(title="async")
    await ticket.asave()
    pk = ticket.pk
    await ticket.adelete()
    names = [name for name, _ in await sync_to_async(sent)(f"ticket:{pk}")]
    assert names == ["testapp.ticket.created", "testapp.ticket.deleted"]


def test_channel_templates_read_any_attribute(note_hook: Callable[..., hooks.Hook]) -> None:
    note_hook(channels=["notes:{priority}", "notes:{text}-{pk}"], fields=["text"])
    note = Note.objects.create(text="hi", priority=5)
    assert (
        sent("notes:5")
        == sent(f"notes:hi-{note.pk}")
        == [("testapp.note.created", {"pk": note.pk, "text": "hi"})]
    )


# -- a hook sends only what it names -----------------------------------------


@pytest.fixture
def careless_user_hook() -> Iterator[None]:
    """``hooks.register(User, channels="staff")``: the integrator named no fields."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    hooks.register(User, channels="staff")
    yield
    hooks.unregister(User)


@pytest.mark.usefixtures("careless_user_hook")
async def test_a_hook_without_fields_sends_nothing_on_the_wire_or_in_the_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model
    from django.test import Client

    from django_sse import asend_event
    from django_sse.checks import check_hooks
    from tests.asgi_client import asgi_stream

    boss = await get_user_model().objects.acreate_user("boss", password="pw", is_staff=True)
    client = Client()
    await sync_to_async(client.force_login)(boss)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    async with asgi_stream("channel=staff", {"Cookie": cookie}) as stream:
        with caplog.at_level(logging.ERROR, logger="django_sse"):
            victim = await get_user_model().objects.acreate_user(
                "victim", "v@example.com", "s3cret"
            )
            victim.first_name = "changed"
            await victim.asave()
        await asend_event("staff", "marker", 1)  # everything sent before it has arrived
        [event] = await stream.wait_events(1)
    assert event["event"] == "marker"
    for leak in (victim.password.encode(), b"v@example.com", b"is_superuser"):
        assert leak not in stream.body
    assert not await StoredEvent.objects.exclude(name="marker").aexists()
    assert "names no payload" in caplog.text  # logged, and the save went through
    assert await get_user_model().objects.filter(first_name="changed").aexists()
    [error] = [m for m in await sync_to_async(check_hooks)() if m.id == "django_sse.E022"]
    assert "auth.User" in error.msg and "'__all__'" in str(error.hint)


@pytest.mark.usefixtures("careless_user_hook")
def test_a_hook_without_fields_raises_while_developing() -> None:
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(DEBUG=True), pytest.raises(ImproperlyConfigured, match="fields="):
        get_user_model().objects.create_user("dev", password="pw")
    assert not StoredEvent.objects.exists()


def test_w021_warns_of_published_secrets() -> None:
    from django.contrib.auth import get_user_model

    from django_sse.checks import check_hooks

    User = get_user_model()

    class UserSerializer(serializers.ModelSerializer[Any]):
        class Meta:
            model = User
            fields = ["username", "password"]

    try:
        hooks.register(User, channels="staff", fields="__all__")
        hooks.register(User, channels="staff", serializer=UserSerializer)
        hooks.register(User, channels="staff", fields=["username", "email"])
        hooks.register(User, channels="staff", payload=lambda user, action: {})
        warnings = [m for m in check_hooks() if m.id == "django_sse.W021"]
    finally:
        hooks.unregister(User)
    assert len(warnings) == 2 and all("'password'" in m.msg and m.hint for m in warnings)


# -- deferred instances and rolled back saves --------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_deleting_a_deferred_instance_sends_deleted_and_deletes(debug: bool) -> None:
    ticket = Ticket.objects.create(title="Deferred", status="pending")
    with override_settings(DEBUG=debug):
        Ticket.objects.only("title").get(pk=ticket.pk).delete()
        Ticket.objects.defer("title", "status").filter(pk=ticket.pk).delete()  # already gone
    assert not Ticket.objects.filter(pk=ticket.pk).exists()
    assert sent(f"ticket:{ticket.pk}")[-1] == (
        "testapp.ticket.deleted",
        {"pk": ticket.pk, "title": "Deferred", "status": "pending", "owner": None},
    )


def test_deferred_instances_in_a_queryset_delete_send_their_values() -> None:
    a, b = Ticket.objects.create(title="qa"), Ticket.objects.create(title="qb")
    for ticket in Ticket.objects.only("pk").filter(pk__in=[a.pk, b.pk]):
        ticket.delete()
    assert [sent(f"ticket:{t.pk}")[-1][1]["title"] for t in (a, b)] == ["qa", "qb"]


def test_changed_only_forgets_what_a_rollback_undid(note_hook: Callable[..., hooks.Hook]) -> None:
    note_hook(fields=["text", "priority"], changed_only=True)
    note = Note.objects.create(text="a", priority=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        note.priority = 2
        note.save()
        raise RuntimeError  # the database keeps priority 1
    note.save()  # priority 2 now reaches the database: a change
    with transaction.atomic():
        note.text = "b"
        note.save()
        try:
            with transaction.atomic():
                note.priority = 3
                note.save()
                raise ValueError
        except ValueError:
            pass
        note.save()  # the savepoint's priority 3 is a change again, the text is not
        note.save()  # and now nothing is
    assert sent("notes") == [
        ("testapp.note.created", {"pk": note.pk, "text": "a", "priority": 1}),
        ("testapp.note.updated", {"pk": note.pk, "priority": 2}),
        ("testapp.note.updated", {"pk": note.pk, "text": "b"}),
        ("testapp.note.updated", {"pk": note.pk, "priority": 3}),
    ]


def test_deleting_a_stale_deferred_instance_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticket = Ticket.objects.create(title="Stale")
    stale = Ticket.objects.only("title").get(pk=ticket.pk)
    Ticket.objects.filter(pk=ticket.pk).delete()  # someone else deleted it first
    with caplog.at_level(logging.ERROR, logger="django_sse"):
        stale.delete()  # the row is gone: nothing to load, and no exception
    assert not Ticket.objects.filter(pk=ticket.pk).exists()
