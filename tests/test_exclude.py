"""``excluding(request)`` in one process: model hooks and the connection id."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import RequestFactory

from django_sse.exclude import excluding, request_key, stream_key
from tests.asgi_client import asgi_stream
from tests.test_presence import _session_cookie, _user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


async def test_a_model_hook_inside_excluding_skips_the_requesting_tab() -> None:
    """``excluding(request)`` around a save: the hook's event (sent on commit,
    here at the end of ``atomic()``) skips the tab that made the change."""
    from tests.testapp.models import Ticket

    alice = await _user("hook-alice")

    @sync_to_async
    def even_ticket() -> Any:
        while True:
            ticket = Ticket.objects.create(title="t")
            if ticket.pk % 2 == 0:
                return ticket

    ticket = await even_ticket()
    mine, other = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    cookie = {"Cookie": await _session_cookie(alice)}
    channel = f"ticket:{ticket.pk}"
    async with (
        asgi_stream(f"channel={channel}&connection={mine}", cookie) as me,
        asgi_stream(f"channel={channel}&connection={other}", cookie) as tab,
    ):

        @sync_to_async
        def save() -> None:
            request = RequestFactory().post("/", headers={"X-SSE-Connection": mine})
            request.user = alice
            with excluding(request), transaction.atomic():
                ticket.title = "changed"
                ticket.save()
            ticket.title = "again"
            ticket.save()  # outside the block: every tab

        await save()
        await tab.wait_for(b'"title":"again"')
        await me.wait_for(b'"title":"again"')
        assert b'"title":"changed"' in tab.body
        assert b'"title":"changed"' not in me.body


def test_keys_bind_the_id_to_the_user() -> None:
    connection = secrets.token_urlsafe(16)
    request = RequestFactory().get("/", headers={"X-SSE-Connection": connection})
    request.user = type("U", (), {"pk": 7, "is_authenticated": True})()
    assert request_key(request) == stream_key("7", connection)
    assert request_key(request) != stream_key("8", connection)
    assert request_key(request) != stream_key(None, connection)
    with pytest.raises(TypeError, match="HttpRequest"):
        request_key("not a request")
    with excluding(request):
        assert request_key(None) == stream_key("7", connection)
    assert request_key(None) is None


@pytest.mark.parametrize("persist", [True, False])
async def test_anotify_and_asend_events_carry_the_requests_exclusion(persist: bool) -> None:
    from django_sse import anotify, asend_events

    alice = await _user(f"anotify-{persist}")
    request = RequestFactory().post("/", HTTP_X_SSE_CONNECTION=secrets.token_urlsafe(16))
    request.user = alice

    async def auser() -> Any:
        return alice

    request.auser = auser  # type: ignore[attr-defined]
    key = request_key(request)
    assert key is not None
    [event] = await anotify(alice, "hi", persist=persist, exclude=request)
    assert event.exclude == key
    # Without exclude=, nothing is excluded; inside excluding(), the block's key.
    [plain] = await anotify(alice, "hi", persist=persist)
    assert plain.exclude is None
    with excluding(request):
        [batched] = await asend_events([("public", "e", 1)])
    assert batched.exclude == key
