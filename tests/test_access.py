"""Access control in-process: settings, checks, tokens, CORS, limits, revocation."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client, override_settings
from django.urls import reverse

import django_sse
from django_sse import cors, limits, tokens
from django_sse.channels import ChannelError
from django_sse.checks import check_access, check_settings
from django_sse.hub import get_hub
from django_sse.logs import RedactTokens, redact
from tests.asgi_client import asgi_stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def make_user(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create(username=name, **extra)


# -- settings and checks -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_AUTHENTICATION_CLASSES", "django_sse.auth.SessionAuthentication"),
        ("SSE_AUTHENTICATION_CLASSES", [1]),
        ("SSE_TOKEN_MAX_AGE", 0),
        ("SSE_MAX_STREAMS_PER_USER", 0),
        ("SSE_MAX_STREAM_AGE", "1h"),
        ("SSE_CORS_ALLOWED_ORIGINS", "https://a.example"),
    ],
)
def test_e003_bad_access_settings(name: str, value: Any) -> None:
    with override_settings(**{name: value}):
        [message] = check_settings()
    assert message.id == "django_sse.E003" and message.obj == name


def test_e010_authentication_class_not_importable() -> None:
    with override_settings(SSE_AUTHENTICATION_CLASSES=["nowhere.Auth"]):
        [message] = check_access()
    assert message.id == "django_sse.E010" and message.hint


@pytest.mark.parametrize("origin", ["*", "https://a.example/", "a.example", "https://a.example/x"])
def test_e011_not_an_origin(origin: str) -> None:
    with override_settings(SSE_CORS_ALLOWED_ORIGINS=[origin]):
        [message] = check_access()
    assert message.id == "django_sse.E011" and "*" in str(message.hint)


def test_access_settings_of_the_project_pass() -> None:
    with override_settings(
        SSE_CORS_ALLOWED_ORIGINS=["https://a.example:8443", "http://[::1]:3000"]
    ):
        assert check_access() == []


def test_revoke_is_exported_lazily() -> None:
    from django_sse.revocation import arevoke, revoke

    assert django_sse.revoke is revoke and django_sse.arevoke is arevoke


# -- tokens --------------------------------------------------------------------


def test_token_expiry_tamper_and_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    user = make_user("t1")
    value, expires = tokens.issue(user, ("user:1", "members"))
    grant = tokens.verify(value, ("members",))
    assert grant.user_pk == str(user.pk) and grant.channels == ("user:1", "members")
    assert abs(expires.timestamp() - grant.expires) < 1e-3
    with pytest.raises(tokens.TokenError, match="not valid for channel 'staff'"):
        tokens.verify(value, ("members", "staff"))
    with pytest.raises(tokens.TokenError, match="invalid token"):
        tokens.verify(value.replace(":", ":x", 1), ())
    with pytest.raises(tokens.TokenError, match="invalid token"):
        tokens.verify("x" * 5000, ())
    real = tokens.time.time
    monkeypatch.setattr(tokens.time, "time", lambda: real() + 61)
    with pytest.raises(tokens.TokenError, match="expired") as info:
        tokens.verify(value, ())
    assert info.value.status == 403


def test_token_max_age_setting() -> None:
    user = make_user("t2")
    with override_settings(SSE_TOKEN_MAX_AGE=5):
        value, _ = tokens.issue(user, ("members",))
    grant = tokens.verify(value, ())
    assert 4 < grant.expires - tokens.time.time() <= 5


async def test_a_token_is_used_once_and_expired_uses_are_pruned() -> None:
    from django_sse.models import StreamToken

    user = await sync_to_async(make_user)("t3")
    grant = tokens.verify((await tokens.aissue(user, ("members",)))[0], ())
    await tokens.consume(grant)
    with pytest.raises(tokens.TokenError, match="already used"):
        await tokens.consume(grant)
    assert await StreamToken.objects.acount() == 1
    old = tokens.Grant(grant.user_pk, grant.channels, "old", grant.expires - 3600)
    await sync_to_async(StreamToken.objects.create)(
        nonce="old", expires=tokens.datetime.fromtimestamp(old.expires, tokens.UTC)
    )
    assert await sync_to_async(tokens.prune)() == 1


def test_redact_filter_removes_tokens_from_log_lines() -> None:
    assert redact('"GET /sse/?channel=a&token=abc:def:ghi HTTP/1.1"') == (
        '"GET /sse/?channel=a&token=[redacted] HTTP/1.1"'
    )
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "%s - %s", ("1.2.3.4", "/sse/?token=s3"), None
    )
    assert RedactTokens().filter(record)
    assert "s3" not in record.getMessage() and "[redacted]" in record.getMessage()


def test_redact_filter_keeps_uvicorns_access_log_working() -> None:
    from uvicorn.logging import AccessFormatter

    # uvicorn's access formatter unpacks the arguments by position.
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/sse/?channel=a&token=s3cret", "1.1", 200), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert line == '127.0.0.1:1 - "GET /sse/?channel=a&token=[redacted] HTTP/1.1" 200 OK'


# -- DRF and the default ---------------------------------------------------------


async def test_the_default_is_session_only() -> None:
    from rest_framework.authtoken.models import Token

    user = await sync_to_async(make_user)("drf-default")
    token = await sync_to_async(Token.objects.create)(user=user)
    client = AsyncClient()
    url = f"/sse/?channel=user:{user.pk}"
    with override_settings(SSE_AUTHENTICATION_CLASSES=["django_sse.auth.SessionAuthentication"]):
        response = await client.get(url, headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 403


# -- CSRF on the token endpoint ------------------------------------------------


def test_token_endpoint_needs_csrf_from_session_users() -> None:
    user = make_user("csrf-user")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("django_sse:token")
    assert url == "/sse/token/"
    response = client.post(url, {"channel": "members"})
    assert response.status_code == 403 and b"CSRF" in response.content
    from django.middleware.csrf import get_token
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    secret = get_token(request)
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    response = client.post(url, {"channel": "members"}, headers={"X-CSRFToken": secret})
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"token", "expires"}


# -- CORS --------------------------------------------------------------------------


@override_settings(SSE_CORS_ALLOWED_ORIGINS=["https://app.example"])
def test_cors_rules() -> None:
    assert cors.is_allowed("https://app.example") and cors.is_allowed("HTTPS://APP.EXAMPLE/")
    assert not cors.is_allowed("https://app.example.evil") and not cors.is_allowed("null")
    assert cors.origin_error(None, "http://testserver") is None
    assert cors.origin_error("http://testserver", "http://testserver") is None
    assert cors.origin_error("https://evil.example", "http://testserver") is not None
    headers = cors.response_headers("https://app.example")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert cors.response_headers("https://evil.example") == {"Vary": "Origin"}
    ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "X-Evil"}
    assert cors.preflight("https://app.example", ask, "GET")[0] == 403
    ask = {"Access-Control-Request-Method": "DELETE"}
    assert cors.preflight("https://app.example", ask, "GET")[0] == 403


# -- limits ------------------------------------------------------------------------


@override_settings(SSE_MAX_STREAMS_PER_USER=1)
def test_stream_slots_are_released_once_even_if_never_used() -> None:
    slot = limits.acquire("42")
    with pytest.raises(ChannelError) as info:
        limits.acquire("42")
    assert info.value.status == 429
    assert slot is not None
    slot.release()
    slot.release()
    assert limits.open_streams("42") == 0
    limits.acquire("42")  # dropped at once: a response that never streamed
    gc.collect()
    assert limits.open_streams("42") == 0
    assert limits.acquire(None) is None  # anonymous readers are not counted


@override_settings(SSE_MAX_STREAMS_PER_USER=1)
@pytest.mark.timeout(10)
def test_a_slot_finalized_while_the_count_is_locked_does_not_deadlock() -> None:
    slot = limits.acquire("43")
    assert slot is not None
    # A garbage collection can finalize a slot in the middle of ``with _lock``
    # on the same thread; waiting for the lock there would hang the process.
    with limits._lock:
        del slot
        gc.collect()
    assert limits.open_streams("43") == 0
    assert limits.acquire("43") is not None


@override_settings(SSE_MAX_STREAM_AGE=100)
def test_max_age_is_jittered_down_by_at_most_a_tenth() -> None:
    ages = {limits.max_age() for _ in range(50)}
    assert all(a is not None and 90 <= a <= 100 for a in ages) and len(ages) > 1


# -- revocation in one process ---------------------------------------------------


async def test_revoke_inside_a_transaction_waits_for_commit() -> None:
    from django.db import transaction

    user = await sync_to_async(make_user)("rev-atomic")
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    async with asgi_stream(f"channel=user:{user.pk}", {"Cookie": cookie}) as stream:
        hub = get_hub()
        assert hub.streams_of(str(user.pk)) == 1

        def revoke_in_atomic() -> int:
            with transaction.atomic():
                django_sse.revoke(user)
                return hub.streams_of(str(user.pk))

        assert await sync_to_async(revoke_in_atomic)() == 1  # not yet: not committed
        await stream.wait_for(b"event: stream-closed\n")
        assert b'"reason":"revoked","reconnect":false' in stream.body


async def test_drf_session_authentication_works_without_middleware() -> None:
    """The fast path has no AuthenticationMiddleware; DRF's class still finds the user."""
    import io

    from django.core.handlers.asgi import ASGIRequest

    from django_sse.auth import authenticate_classes

    user = await sync_to_async(make_user)("drf-session")
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/sse/",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie)],
    }
    request = ASGIRequest(scope, io.BytesIO())
    from importlib import import_module

    from django.conf import settings

    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    classes = ["rest_framework.authentication.SessionAuthentication"]
    with override_settings(SSE_AUTHENTICATION_CLASSES=classes):
        identity = await authenticate_classes(request)
    assert identity.user.pk == user.pk and identity.via == "SessionAuthentication"
    assert identity.session_key == request.session.session_key  # logout finds the stream


async def _all(chunks: Any) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def test_a_stream_revoked_while_it_was_starting_closes_at_once() -> None:
    import time

    from django_sse.auth import Identity
    from django_sse.stream import event_stream

    user = await sync_to_async(make_user)("starting")
    hub = get_hub()
    authenticated = Identity(user, "session", session_key="s", since=time.monotonic())
    hub.revoke(str(user.pk), session="s")  # logout, before the stream subscribed
    chunks = event_stream(("public",), identity=authenticated)
    body = b"".join(await asyncio.wait_for(_all(chunks), 5))
    assert b": connected" in body
    assert b'event: stream-closed\ndata: {"reason":"revoked","reconnect":false}' in body
    # Authenticated after the revocation, or another session: not affected.
    later = Identity(user, "session", session_key="s", since=time.monotonic())
    other = Identity(user, "session", session_key="t", since=authenticated.since)
    streams = [event_stream(("public",), identity=i) for i in (later, other)]
    for stream in streams:
        await anext(stream)
    mine = [s for s in hub._subscriptions if s.owner == str(user.pk)]
    assert len(mine) == 2 and not any(s.closed for s in mine)
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers("public") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_a_policy_that_meets_a_database_outage_is_a_503_with_retry_after() -> None:
    # A 403 would make clients give up for good (the JS helper stops on it)
    # during the very outage, or resume storm, that they should ride out.
    from django.db.utils import OperationalError
    from django.test import AsyncClient

    from django_sse.channels import registry

    def policy(user: Any, pk: str) -> bool:
        raise OperationalError("terminating connection due to administrator command")

    registry.register("dbdown:{pk}")(policy)
    try:
        response = await AsyncClient().get("/sse/", {"channel": "dbdown:1"})
    finally:
        registry.unregister("dbdown:{pk}")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert (
        response.content
        == b"the permission check for channel 'dbdown:1' is unavailable: try again shortly\n"
    )
