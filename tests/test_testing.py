"""django_sse.testing: capturing what was sent, on-commit publishing in tests,
and the in-process stream reader."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import TestCase
from django.utils.html import format_html

from django_sse import asend_event, notify, send_event, user_channel
from django_sse.pytest_plugin import sse_events  # noqa: F401  (the plugin's fixture)
from django_sse.testing import SentEvents, capture_events, run_on_commit, stream_reader
from tests.servers import ROOT
from tests.testapp.models import Comment, Ticket


@pytest.mark.django_db(transaction=True)
def test_assert_sent_matches_channel_name_and_payload_keys() -> None:
    with capture_events() as sent:
        send_event("public", "ticket.updated", {"status": "open", "owner": {"name": "ann"}})
        send_event("public", "ticket.updated", {"status": "closed", "owner": {"name": "bo"}})
    event = sent.assert_sent("public", "ticket.updated", data__status="open")
    assert event.data == {"status": "open", "owner": {"name": "ann"}}
    assert event.seq is not None  # stored: counted once published
    sent.assert_sent("public", data__owner__name="bo")
    sent.assert_sent("public", "ticket.updated", count=2)
    sent.assert_sent(data={"status": "closed", "owner": {"name": "bo"}})
    assert [e.data["status"] for e in sent] == ["open", "closed"]


@pytest.mark.django_db(transaction=True)
def test_a_failed_assertion_lists_what_was_sent() -> None:
    with capture_events() as sent:
        send_event("public", "ticket.updated", {"status": "closed"})
    with pytest.raises(AssertionError) as failed:
        sent.assert_sent("public", "ticket.updated", data__status="open")
    message = str(failed.value)
    assert "named 'ticket.updated' with data__status='open'" in message
    assert 'public ticket.updated {"status":"closed"}' in message
    with pytest.raises(AssertionError, match="expected 2 event"):
        sent.assert_sent("public", count=2)
    with pytest.raises(AssertionError, match="Sent \\(1\\)"):
        sent.assert_nothing_sent()
    sent.assert_nothing_sent("a")
    sent.assert_nothing_sent("public", "other.name")


def test_a_misspelt_lookup_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="data__<key>"):
        SentEvents().assert_sent("public", status="open")


def test_nothing_sent_says_so() -> None:
    with pytest.raises(AssertionError, match="Nothing was sent"):
        SentEvents().assert_sent("public")


@pytest.mark.django_db(transaction=True)
def test_markup_is_captured_as_html_and_json_strings_as_data() -> None:
    with capture_events() as sent:
        send_event("public", "fragment", format_html("<b>{}</b>", "<i>x</i>"))
        send_event("public", "text", "<b>x</b>")
    html = sent.assert_sent("public", "fragment")
    assert html.html and html.data == "<b>&lt;i&gt;x&lt;/i&gt;</b>"
    text = sent.assert_sent("public", "text")
    assert not text.html and text.data == "<b>x</b>"


@pytest.mark.django_db(transaction=True)
def test_events_count_on_commit_not_before_and_never_on_rollback() -> None:
    with capture_events() as sent:
        with transaction.atomic():
            send_event("tx", "saved", {"n": 1})
            sent.assert_nothing_sent()  # not committed yet
        sent.assert_sent("tx", "saved", data__n=1)
        with pytest.raises(RuntimeError), transaction.atomic():
            send_event("tx", "saved", {"n": 2})
            raise RuntimeError
    sent.assert_sent("tx", "saved", count=1)


@pytest.mark.django_db(transaction=True)
def test_bad_input_raises_and_is_not_captured() -> None:
    with capture_events() as sent:
        with pytest.raises(ValueError, match="reserved"):
            send_event("public", "stream-closed", {})
        with pytest.raises(ValueError):
            send_event("not-registered", "x", {})
    sent.assert_nothing_sent()


@pytest.mark.django_db
def test_run_on_commit_publishes_inside_a_transaction_that_never_commits() -> None:
    # pytest-django's db fixture, as TestCase: one transaction, rolled back.
    with capture_events() as sent:
        Ticket.objects.create(title="Never committed")
    sent.assert_nothing_sent()
    with capture_events(run_on_commit=True) as sent:
        ticket = Ticket.objects.create(title="Printer")
    sent.assert_sent(f"ticket:{ticket.pk}", "testapp.ticket.created", data__title="Printer")
    with capture_events() as sent, run_on_commit():
        ticket.status = "closed"
        ticket.save()
    sent.assert_sent(f"ticket:{ticket.pk}", "testapp.ticket.updated", data__status="closed")


@pytest.mark.django_db(transaction=True)
def test_hooks_and_notify_are_captured() -> None:
    user = get_user_model().objects.create_user("ann")
    with capture_events() as sent:
        ticket = Ticket.objects.create(title="Printer")
        Comment.objects.create(ticket=ticket, text="Out of toner")
        notify(user, "Your ticket moved", url="/tickets/1/")
    sent.assert_sent(f"ticket:{ticket.pk}", "testapp.ticket.created", data__pk=ticket.pk)
    sent.assert_sent("comments", "testapp.comment.created", data__text="Out of toner")
    sent.assert_sent(user_channel(user), "notification", data__message="Your ticket moved")


@pytest.mark.django_db(transaction=True)
def test_events_of_other_threads_are_captured() -> None:
    with capture_events() as sent:
        worker = threading.Thread(target=send_event, args=("public", "from.thread", {}))
        worker.start()
        worker.join(10)
    sent.assert_sent("public", "from.thread")


@pytest.mark.django_db(transaction=True)
def test_nothing_is_captured_after_the_block() -> None:
    with capture_events() as sent:
        pass
    send_event("public", "later", {})
    sent.assert_nothing_sent()


@pytest.mark.django_db(transaction=True)
def test_the_pytest_fixture(sse_events: SentEvents) -> None:  # noqa: F811
    send_event("public", "by.fixture", {"ok": True})
    sse_events.assert_sent("public", "by.fixture", data__ok=True)


class OnCommitInTestCase(TestCase):
    """A Django ``TestCase`` (never commits) with run_on_commit=True."""

    def test_hook_events_publish_at_the_end_of_the_block(self) -> None:
        with capture_events(run_on_commit=True) as sent:
            ticket = Ticket.objects.create(title="Scanner")
            sent.assert_nothing_sent()  # still inside: not committed
        sent.assert_sent(f"ticket:{ticket.pk}", "testapp.ticket.created", data__status="open")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_capture_asend_event() -> None:
    with capture_events() as sent:
        await asend_event("public", "async.sent", {"n": 1})
    sent.assert_sent("public", "async.sent", data__n=1)


# The in-process stream reader.


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_reads_what_is_published() -> None:
    async with stream_reader("/sse/?channel=public") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        await asend_event("public", "hello", {"text": "hi"})
        event = await stream.next_event()
    assert (event.event, event.json) == ("hello", {"text": "hi"})
    assert event.id  # resumable


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_logs_in_a_user_and_checks_the_channel() -> None:
    User = get_user_model()
    ann = await sync_to_async(User.objects.create_user)("ann")
    bob = await sync_to_async(User.objects.create_user)("bob")
    async with stream_reader(f"/sse/?channel={user_channel(ann)}", user=ann) as stream:
        await asend_event(user_channel(ann), "notification", {"message": "for ann"})
        assert (await stream.next_event()).json == {"message": "for ann"}
    async with stream_reader(f"/sse/?channel={user_channel(ann)}", user=bob) as refused:
        assert refused.status == 403
        assert refused.reason
        with pytest.raises(AssertionError, match="ended"):
            await refused.next_event()
    async with stream_reader(f"/sse/?channel={user_channel(ann)}") as anonymous:
        assert anonymous.status == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_resumes_with_last_event_id() -> None:
    async with stream_reader("/sse/?channel=notes") as stream:
        await asend_event("notes", "n", {"n": 1})
        first = await stream.next_event()
    await asend_event("notes", "n", {"n": 2})
    await asend_event("notes", "n", {"n": 3})
    headers = {"Last-Event-ID": first.id}
    async with stream_reader("/sse/?channel=notes", headers=headers) as resumed:
        missed = [await resumed.next_event(), await resumed.next_event()]
    assert [e.json for e in missed] == [{"n": 2}, {"n": 3}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_next_event_times_out_with_what_arrived() -> None:
    async with stream_reader("/sse/?channel=public") as stream:
        with pytest.raises(TimeoutError, match="connected"):
            await stream.next_event(timeout=0.2)
        # The timeout cancelled the wait only: the stream still delivers.
        await asend_event("public", "after", {})
        assert (await stream.next_event()).event == "after"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_refuses_bad_names_as_the_server_does() -> None:
    async with stream_reader("/sse/?channel=bad name") as stream:
        assert stream.status == 400
    async with stream_reader("/sse/?channel=unregistered") as stream:
        assert stream.status == 404


def test_the_pytest_plugin_provides_the_fixture(tmp_path: Path) -> None:
    # As an installed package's pytest11 entry point loads it: by module name,
    # in a test suite that imports nothing of it.
    (tmp_path / "test_users_code.py").write_text(
        "import pytest\n"
        "from django_sse import send_event\n"
        "@pytest.mark.django_db(transaction=True)\n"
        "def test_publishes(sse_events):\n"
        "    send_event('public', 'from.users.code', {'ok': True})\n"
        "    sse_events.assert_sent('public', 'from.users.code', data__ok=True)\n"
        "    sse_events.assert_nothing_sent('public', 'other')\n"
    )
    # Plugins named with -p only: installed from this checkout, the package's
    # pytest11 entry point would load the same module a second time.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    # Its own test database (SQLite in memory): never this session's, which the
    # inner run would create and drop again.
    for name in ("SSE_TEST_POSTGRES", "SSE_TEST_POSTGRES_DB", "SSE_TEST_DB"):
        env.pop(name, None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "django_sse.pytest_plugin",
            "-p",
            "pytest_django.plugin",
            "-p",
            "no:cacheprovider",
            "--ds=tests.settings",
            "-q",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_over_the_redis_layer(redis_url: str) -> None:
    from channels.layers import channel_layers, get_channel_layer
    from django.test import override_settings

    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        channel_layers.backends.clear()
        try:
            assert type(get_channel_layer()).__name__ == "RedisPubSubChannelLayer"
            async with stream_reader("/sse/?channel=typing:redis") as stream:
                # An ephemeral channel: nothing stored, so only Redis can carry it.
                await asend_event("typing:redis", "typing", {"who": "ann"})
                event = await stream.next_event()
        finally:
            layer = channel_layers.backends.get("default")
            if layer is not None:
                await layer.flush()
            channel_layers.backends.clear()
    assert (event.event, event.json) == ("typing", {"who": "ann"})


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_stream_reader_through_another_application() -> None:
    from django.core.asgi import get_asgi_application

    # Django's own door (the view), without the fast path in front.
    view_door = get_asgi_application()
    async with stream_reader("/sse/?channel=public", application=view_door) as stream:
        assert stream.status == 200
        await asend_event("public", "via.view", {"n": 1})
        assert (await stream.next_event()).json == {"n": 1}
