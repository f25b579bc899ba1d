"""A logout's revocation names the session by a keyed hash: the live session
key never goes out over Redis, and every process still closes that session's
streams by it. A real Redis, read by a second channel layer, and two real
server processes sharing it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from tests.servers import RedisServer, Server
from tests.sse_client import login, open_stream, unique

pytestmark = pytest.mark.redis


@pytest.mark.django_db(transaction=True)
async def test_logout_never_puts_the_live_session_key_on_the_layer(
    private_redis_server: RedisServer,
) -> None:
    from channels.layers import channel_layers
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.contrib.auth import get_user_model, logout
    from django.contrib.auth import login as django_login
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.test import RequestFactory

    from django_sse.hub import CONTROL_GROUP
    from django_sse.sessions import digest

    listener = RedisPubSubChannelLayer(hosts=[private_redis_server.url])
    channel = await listener.new_channel()
    await listener.group_add(CONTROL_GROUP, channel)
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [private_redis_server.url]},
        }
    }

    def log_in_and_out() -> str:
        user = get_user_model().objects.create_user(unique("wire"), password="pw")
        request: Any = RequestFactory().get("/")
        SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type,return-value]
        request.user = user
        django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session.save()
        key = str(request.session.session_key)
        with override_settings(CHANNEL_LAYERS=layers):
            channel_layers.backends.clear()
            try:
                logout(request)
            finally:
                channel_layers.backends.clear()
        return key

    try:
        key = await sync_to_async(log_in_and_out)()
        message = await asyncio.wait_for(listener.receive(channel), 10.0)
    finally:
        await listener.flush()
    assert key not in repr(message), message  # before: the raw key
    assert message["session"] == digest(key)


@pytest.mark.server
async def test_a_logout_on_one_process_closes_the_sessions_stream_on_the_other(
    redis_servers: tuple[Server, Server],
) -> None:
    one, two = redis_servers
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        name = unique("wlog")
        pk = await login(a, one.url, name)
        assert await login(b, one.url, name) == pk
        url = f"{two.url}/sse/?channel=user:{pk}"
        async with open_stream(a, url) as mine, open_stream(b, url) as other:
            (await a.get(f"{one.url}/test/logout/")).raise_for_status()
            # "revoked", not the check's "session ended": the message matched.
            [closed] = await mine.collect(1, name="stream-closed", timeout=1.5)
            assert json.loads(closed.data) == {"reason": "revoked", "reconnect": False}
            # The other session of the same user is not touched.
            await publish_private(b, one.url, pk)
            [event] = await other.collect(1, timeout=5.0)
            assert event.event == "private", event


async def publish_private(client: httpx.AsyncClient, base: str, pk: int) -> None:
    from tests.sse_client import publish

    await publish(client, base, f"user:{pk}", event="private", data={"n": 1})
