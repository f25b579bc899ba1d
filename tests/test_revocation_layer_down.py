"""Logout works while Redis is down: the revocation cannot reach the other
processes, but the logout succeeds, this process's streams of the session
close, and the session is over. A real refused connection (nothing listens on
the port) and a real Redis killed under a real server."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from django.test import override_settings

from tests.servers import RedisServer, running_server
from tests.sse_client import login, open_stream, unique

#: Nothing listens there: every connection is refused at once.
DOWN = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
    }
}


@pytest.mark.django_db(transaction=True)
def test_logout_works_while_redis_is_down(
    rf: Any, django_user_model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from channels.layers import channel_layers
    from django.contrib.auth import SESSION_KEY, logout
    from django.contrib.auth import login as django_login
    from django.contrib.sessions.middleware import SessionMiddleware

    user = django_user_model.objects.create_user("down-a", password="pw")
    request = rf.get("/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = user
    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    with override_settings(CHANNEL_LAYERS=DOWN), caplog.at_level(logging.ERROR, "django_sse"):
        channel_layers.backends.clear()
        try:
            logout(request)  # before: redis ConnectionError out of the receiver
        finally:
            channel_layers.backends.clear()
    assert SESSION_KEY not in request.session
    failed = [r for r in caplog.records if "The channel layer failed" in r.getMessage()]
    assert len(failed) <= 1 and not any(r.exc_info for r in failed), failed


@pytest.mark.server
@pytest.mark.redis
async def test_logout_with_redis_killed_closes_this_process_streams(
    server_db: str, private_redis_server: RedisServer
) -> None:
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": private_redis_server.url,
    }
    with running_server("uvicorn", **env, SSE_PUBLISH_TIMEOUT="2") as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            pk = await login(client, server.url, unique("down"))
            url = f"{server.url}/sse/?channel=user:{pk}"
            async with open_stream(client, url) as stream:
                private_redis_server.kill()
                answer = await client.get(f"{server.url}/test/logout/")
                assert answer.status_code == 200, answer.text  # before: 500
                [closed] = await stream.collect(1, name="stream-closed", timeout=10.0)
            assert json.loads(closed.data) == {"reason": "revoked", "reconnect": False}
            async with client.stream("GET", url) as again:
                assert again.status_code == 403  # logged out for real
