"""The Django view driven in-process through Django's ASGI handler."""

from __future__ import annotations

import asyncio

import pytest
from django.core.asgi import get_asgi_application
from django.test import AsyncClient, Client, override_settings
from django.urls import reverse

from django_sse import asend_event
from django_sse.hub import get_hub
from tests.asgi_client import ASGIStream
from tests.sse_client import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


async def test_in_process_stream_delivers_and_cleans_up_on_disconnect() -> None:
    app = get_asgi_application()
    stream = ASGIStream(reverse("django_sse:stream"), "channel=public")
    task = asyncio.create_task(app(stream.scope, stream.receive, stream.send))
    await stream.wait_for(b": connected\n")
    assert stream.start is not None and stream.start["status"] == 200
    headers = dict(stream.start["headers"])
    assert headers[b"Content-Type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"Content-Encoding"] == b"identity"  # GZipMiddleware left it alone
    hub = get_hub()
    assert hub.subscribers("public") == 1

    await asend_event("public", "greeting", {"hi": 1})
    await stream.wait_for(b'data: {"hi":1}\n\n')
    assert b"event: greeting\n" in stream.body

    stream.disconnect.set()
    await wait_until(lambda: hub.subscribers("public") == 0, timeout=1.0)
    await asyncio.wait_for(task, 5)


@override_settings(SSE_QUEUE_SIZE=2, SSE_KEEPALIVE=30)
async def test_overflow_ends_the_stream_with_a_reason() -> None:
    app = get_asgi_application()
    stream = ASGIStream("/sse/", "channel=public")
    task = asyncio.create_task(app(stream.scope, stream.receive, stream.send))
    await stream.wait_for(b": connected\n")
    stream.reading.clear()
    await asend_event("public", "e", 0)  # taken by the stream, stuck in send()
    for i in range(1, 5):  # two fit in the queue, the next overflows it
        await asend_event("public", "e", i)
    stream.reading.set()
    await asyncio.wait_for(task, 5)  # the response ends by itself
    assert b"event: stream-closed\n" in stream.body
    assert b'"reason":"overflow"' in stream.body
    assert stream.body.count(b"event: e\n") == 3  # the one in flight and the queued two
    assert get_hub().subscribers("public") == 0


async def test_async_client_error_codes() -> None:
    client = AsyncClient()
    response = await client.get("/sse/", {"channel": "nowhere"})
    assert response.status_code == 404
    response = await client.get("/sse/", {"channel": "a b"})
    assert response.status_code == 400
    response = await client.get("/sse/", {"channel": "members"})
    assert response.status_code == 403


def test_under_wsgi_errors_still_work_and_streams_are_refused() -> None:
    client = Client()
    assert client.get("/sse/", {"channel": "nowhere"}).status_code == 404
    response = client.get("/sse/", {"channel": "public"})
    assert response.status_code == 500
    assert b"ASGI server" in response.content


def test_url_name() -> None:
    assert reverse("django_sse:stream") == "/sse/"
