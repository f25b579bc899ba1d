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
