"""The inbox API in one process: items, counts, and the events every change publishes."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_sse import anotify, inbox, notify, user_channel
from django_sse.models import InboxItem, StoredEvent
from tests.testapp.models import Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def events(user: Any) -> list[tuple[str, dict[str, Any]]]:
    rows = StoredEvent.objects.filter(channel=user_channel(user)).order_by("seq")
    return [(row.name, json.loads(row.payload)) for row in rows]


def make_users(*names: str) -> list[Any]:
    return [get_user_model().objects.create(username=name) for name in names]


def test_notify_keeps_an_item_and_publishes_it_with_the_unread_count() -> None:
    ann, bob = make_users("ann", "bob")
    ticket = Ticket.objects.create(title="Printer on fire")
    [event] = notify(ann, "Closed", level="success", url="/t/1/", actor=bob, target=ticket, n=1)
    item = InboxItem.objects.get()
    assert (item.recipient, item.message, item.level, item.url) == (
        ann,
        "Closed",
        "success",
        "/t/1/",
    )
    assert (item.actor, item.target, item.data, item.read_at) == (bob, ticket, {"n": 1}, None)
    [(name, data)] = events(ann)
    assert name == "notification"
    assert event.seq == 1
    assert data["id"] == item.pk and data["unread"] == 1 and data["n"] == 1
    assert (data["actor"], data["target"], data["read_at"]) == ("bob", str(ticket), None)
    notify(ann, "Second")
    assert events(ann)[-1][1]["unread"] == 2
    assert inbox.unread_count(ann) == 2 and inbox.unread_count(bob) == 0


def test_persist_false_keeps_nothing() -> None:
    [ann] = make_users("ann")
    notify(ann, "gone", persist=False, n=1)
    assert not InboxItem.objects.exists()
    assert events(ann) == [
        ("notification", {"message": "gone", "level": "info", "url": None, "n": 1})
    ]


def test_bad_input_stores_nothing() -> None:
    [ann] = make_users("ann")
    with pytest.raises(ValueError, match="notification url"):
        notify(ann, "x", url="javascript:alert(1)")
    with pytest.raises(ValueError, match="SSE_MAX_EVENT_BYTES"):
        notify(ann, "x", blob="y" * 70_000)
    with pytest.raises(TypeError, match="JSON"):
        notify(ann, "x", when=object())
    with pytest.raises(TypeError, match="inbox item's own"):
        notify(ann, "x", unread=5)
    with pytest.raises(TypeError, match="inbox item's own"):
        notify(ann, "x", read=True)  # the list would show an unread item as read
    with pytest.raises(ValueError, match="level"):
        notify(ann, "x", level="x" * 21)
    assert not InboxItem.objects.exists() and events(ann) == []


def test_notify_rolls_back_with_the_transaction() -> None:
    [ann] = make_users("ann")
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(ann, "rolled back")
        raise RuntimeError
    assert not InboxItem.objects.exists() and events(ann) == []


def test_read_all_read_and_delete_publish_the_new_count() -> None:
    ann, bob = make_users("ann", "bob")
    a1, a2, a3 = (notify(ann, f"a{i}")[0] for i in range(3))
    [b1] = notify(bob, "b1")
    ids = [json.loads(e.payload)["id"] for e in (a1, a2, a3)]
    bob_id = json.loads(b1.payload)["id"]
    assert inbox.mark_read(ann, [ids[0], bob_id, 999_999]) == 1  # bob's id is ignored
    assert inbox.mark_read(ann, [ids[0]]) == 0  # already read: nothing to publish
    assert inbox.delete(ann, [ids[1], bob_id]) == 1
    assert inbox.mark_all_read(ann) == 1
    assert inbox.mark_all_read(ann) == 0
    got = [data for name, data in events(ann) if name == "inbox"]
    assert got == [
        {"action": "read", "ids": [ids[0]], "unread": 2},
        {"action": "delete", "ids": [ids[1]], "unread": 1},
        {"action": "read_all", "unread": 0},
    ]
    # Bob's item was neither read nor deleted, and he heard nothing.
    assert InboxItem.objects.get(pk=bob_id).read_at is None
    assert [name for name, _ in events(bob)] == ["notification"]
    assert list(inbox.items(ann).values_list("id", flat=True)) == [ids[2], ids[0]]
    assert list(inbox.items(ann, unread=True)) == []


@pytest.mark.parametrize("ids", ["1,2", [True], ["1"], [0], [2**63], None, [1.5]])
def test_bad_ids_are_refused(ids: Any) -> None:
    [ann] = make_users("ann")
    with pytest.raises((TypeError, ValueError)):
        inbox.mark_read(ann, ids)
    with pytest.raises(ValueError, match="at most"):
        inbox.delete(ann, range(1, 2000))


def test_anonymous_users_have_no_inbox() -> None:
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ValueError, match="authenticated"):
        inbox.unread_count(AnonymousUser())
    with pytest.raises(ValueError, match="authenticated"):
        inbox.mark_all_read(AnonymousUser())


def test_notify_a_queryset_of_many_users_in_a_few_statements(
    django_assert_max_num_queries: Any,
) -> None:
    User = get_user_model()
    User.objects.bulk_create([User(username=f"u{i}") for i in range(1200)])
    users = User.objects.filter(username__startswith="u")
    with django_assert_max_num_queries(40):
        sent = notify(users, "hello everyone", level="warning")
    assert len(sent) == 1200 and InboxItem.objects.count() == 1200
    first = User.objects.get(username="u0")
    assert json.loads(sent[0].payload)["unread"] == 1 and sent[0].channel == user_channel(first)
    assert len({e.channel for e in sent}) == 1200


async def test_async_twins() -> None:
    ann, bob = await sync_to_async(make_users)("ann", "bob")
    sent = await anotify(get_user_model().objects.order_by("pk"), "async")
    assert [e.channel for e in sent] == [user_channel(ann), user_channel(bob)]
    ids = [json.loads(e.payload)["id"] for e in sent]
    assert await inbox.aunread_count(ann) == 1
    assert await inbox.amark_read(ann, [ids[0], ids[1]]) == 1
    assert await inbox.adelete(bob, [ids[0]]) == 0
    assert await inbox.amark_all_read(bob) == 1
    assert await inbox.adelete(bob, [ids[1]]) == 1
    assert await inbox.aunread_count(ann) == 0 and await inbox.aunread_count(bob) == 0


def test_prune_by_age_and_per_user_cap_tells_users_who_lost_unread_items() -> None:
    ann, bob = make_users("ann", "bob")
    for i in range(5):
        notify(ann, f"a{i}")
    notify(bob, "old")
    InboxItem.objects.filter(recipient=bob).update(created=timezone.now() - timedelta(days=100))
    inbox.mark_all_read(bob)
    notify(bob, "new")
    with override_settings(SSE_INBOX_MAX_AGE=90 * 86400.0, SSE_INBOX_MAX_ITEMS=3):
        out = StringIO()
        call_command("sse_prune", stdout=out)
    assert "Removed 3 inbox item(s)" in out.getvalue()
    assert list(InboxItem.objects.filter(recipient=ann).values_list("message", flat=True)) == [
        "a4",
        "a3",
        "a2",
    ]
    assert events(ann)[-1] == ("inbox", {"action": "sync", "unread": 3})
    # Bob lost only a read item: his count did not change, so no event.
    assert events(bob)[-1][0] == "notification"
    with override_settings(SSE_INBOX_MAX_AGE=None, SSE_INBOX_MAX_ITEMS=None):
        assert inbox.prune() == 0


@pytest.mark.skipif(
    "postgresql" not in __import__("django.db").db.connection.vendor,
    reason="needs PostgreSQL for real concurrent writers",
)
def test_mark_all_read_racing_new_notifications_ends_on_the_right_count() -> None:
    import threading

    from django.db import connection

    [ann] = make_users("ann")
    errors: list[BaseException] = []
    rounds = 25

    def run(work: Any, barrier: threading.Barrier) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(30)
                work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    barrier = threading.Barrier(3)
    workers = [
        threading.Thread(target=run, args=(lambda: notify(ann, "race"), barrier)),
        threading.Thread(target=run, args=(lambda: notify(ann, "race 2"), barrier)),
        threading.Thread(target=run, args=(lambda: inbox.mark_all_read(ann), barrier)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    truth = InboxItem.objects.filter(recipient=ann, read_at__isnull=True).count()
    sent = events(ann)
    assert len([n for n, _ in sent if n == "notification"]) == 2 * rounds
    # Applied in order, as a client does, the events end on the truth, and each
    # count is the previous one plus one for a new item, or 0 after read_all.
    counts = [data["unread"] for _, data in sent]
    assert counts[-1] == truth
    previous = 0
    for name, data in sent:
        expected = previous + 1 if name == "notification" else 0
        assert data["unread"] == expected, sent
        previous = data["unread"]


def test_badge_and_list_render_the_count_and_escaped_items_server_side() -> None:
    from django.template import Context, Template
    from django.test import RequestFactory

    [ann] = make_users("ann")
    notify(ann, "<script>alert(1)</script>", url="/t/1/?a=1&b=2")
    notify(ann, "plain")
    page = Template("{% load django_sse %}{% sse_inbox_badge %}{% sse_inbox_list 1 %}")
    request = RequestFactory().get("/")
    request.user = ann
    html = page.render(Context({"request": request}))
    assert 'data-count="2" aria-live="polite">2</span>' in html
    assert "plain" in html and "alert" not in html  # limit 1: the newest only
    request_all = Template("{% load django_sse %}{% sse_inbox_list %}")
    html = request_all.render(Context({"request": request}))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'href="/t/1/?a=1&amp;b=2"' in html
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    html = page.render(Context({"request": request, "user": ann}))  # never the context's user
    assert 'data-count="0" aria-live="polite">0</span>' in html and "plain" not in html


def test_an_item_saved_without_notify_gets_no_unsafe_link_anywhere(client: Any) -> None:
    """A careless integrator's ``InboxItem.objects.create(url=...)`` skips the
    URL check of ``notify()`` and ``clean()``: the tag, the list endpoint and the
    events still never carry a ``javascript:`` or off-site link."""
    from django.template import Context, Template
    from django.test import RequestFactory

    [ann] = make_users("ann")
    bad = ["javascript:alert(1)", "//evil.example/x", "https://evil.example/", "java\tscript:1"]
    for url in bad:
        InboxItem.objects.create(recipient=ann, message="click", url=url)
    InboxItem.objects.create(recipient=ann, message="fine", url="/t/1/")
    request = RequestFactory().get("/")
    request.user = ann
    html = Template("{% load django_sse %}{% sse_inbox_list %}").render(
        Context({"request": request})
    )
    assert html.count("href=") == 1 and 'href="/t/1/"' in html, html
    client.force_login(ann)
    listed = client.get("/sse/inbox/").json()["items"]
    assert [item["url"] for item in listed] == ["/t/1/", None, None, None, None]
    inbox.mark_read(ann, [item["id"] for item in listed])
    assert "evil" not in json.dumps(events(ann)) and "javascript" not in json.dumps(events(ann))


def test_inbox_checks() -> None:
    from django_sse.inbox_checks import check_inbox

    assert check_inbox() == []
    with override_settings(SSE_STORE=None):
        assert [m.id for m in check_inbox()] == ["django_sse.W050"]
    with override_settings(INSTALLED_APPS=["django_sse", "django_sse.contrib.notifications"]):
        [error] = check_inbox()
    assert error.id == "django_sse.E050" and "notifications" in error.hint


def test_the_admin_lists_items_and_its_actions_publish(client: Any) -> None:
    ann, root = make_users("ann", "root")
    root.is_staff = root.is_superuser = True
    root.save()
    client.force_login(root)
    ids = [json.loads(notify(ann, f"n{i}")[0].payload)["id"] for i in range(3)]
    changelist = client.get("/admin/django_sse/inboxitem/")
    assert changelist.status_code == 200 and "n2" in changelist.content.decode()
    assert "delete_selected" not in changelist.content.decode()
    assert client.get("/admin/django_sse/inboxitem/add/").status_code == 403
    for action, selected in (("mark_read", ids[:2]), ("delete_live", ids[1:])):
        done = client.post(
            "/admin/django_sse/inboxitem/",
            {"action": action, "_selected_action": [str(i) for i in selected]},
            follow=True,
        )
        assert done.status_code == 200
    [left] = InboxItem.objects.all()
    assert left.pk == ids[0] and left.read_at is not None
    assert [data for name, data in events(ann) if name == "inbox"] == [
        {"action": "read", "ids": ids[:2], "unread": 1},
        {"action": "delete", "ids": ids[1:], "unread": 0},
    ]


def test_a_view_only_staff_user_cannot_mark_items_read_in_the_admin(client: Any) -> None:
    from django.contrib.auth.models import Permission

    ann, viewer = make_users("ann", "viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_inboxitem"))
    client.force_login(viewer)
    [item] = [json.loads(e.payload)["id"] for e in notify(ann, "n")]
    changelist = client.get("/admin/django_sse/inboxitem/")
    assert changelist.status_code == 200 and "mark_read" not in changelist.content.decode()
    client.post(
        "/admin/django_sse/inboxitem/", {"action": "mark_read", "_selected_action": [str(item)]}
    )
    assert InboxItem.objects.get(pk=item).read_at is None
    assert inbox.unread_count(ann) == 1


def test_fuzzed_inbox_requests_get_a_200_or_a_one_line_400_never_a_500() -> None:
    from django.test import Client
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    [ann] = make_users("ann")
    notify(ann, "mine")
    client = Client(raise_request_exception=True)  # an unhandled exception fails the example
    client.force_login(ann)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
    json_bodies = st.recursive(
        scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(max_size=5), inner)
    ).map(lambda v: json.dumps({"ids": v}))

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        path=st.sampled_from(["read/", "delete/"]),
        body=st.one_of(json_bodies, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
        form=st.lists(st.text(max_size=25), max_size=5),
        query=st.dictionaries(
            st.sampled_from(["before", "limit", "unread"]), st.text(max_size=25), max_size=3
        ),
    )
    def attempt(path: str, body: str, form: list[str], query: dict[str, str]) -> None:
        for response in (
            client.post(f"/sse/inbox/{path}", body, content_type="application/json"),
            client.post(f"/sse/inbox/{path}", {"ids": form}),
            client.get("/sse/inbox/", query),
        ):
            assert response.status_code in {200, 400}, response.content
            if response.status_code == 400:
                assert len(response.content.decode().strip().splitlines()) == 1

    attempt()
    assert InboxItem.objects.count() <= 1


@pytest.mark.skipif(
    "postgresql" not in __import__("django.db").db.connection.vendor,
    reason="needs PostgreSQL for real concurrent writers",
)
def test_bulk_notifies_of_overlapping_users_in_opposite_orders_do_not_deadlock() -> None:
    import threading

    from django.db import connection

    User = get_user_model()
    User.objects.bulk_create([User(username=f"d{i}") for i in range(5000)])
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    rounds = 4

    def run(order: str) -> None:
        try:
            users = list(User.objects.order_by(order).only("pk"))
            for _ in range(rounds):
                barrier.wait(60)  # both lock phases at once, every round
                notify(users, f"order {order}")
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(order,)) for order in ("pk", "-pk")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert errors == []
    assert InboxItem.objects.count() == 2 * rounds * 5000
