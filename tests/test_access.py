"""Access control in-process: tokens, authentication classes, CORS, limits,
revocation, redaction and the checks E010/E011."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage
from django.test import AsyncClient, override_settings

import django_sse
from django_sse import cors, limits, tokens
from django_sse.channels import ChannelError
from django_sse.checks import check_access, check_settings, is_origin
from django_sse.hub import get_hub
from django_sse.logs import RedactStreamTokens, redact
from tests.sse_client import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def make_user(name: str = "alice", **fields: Any) -> Any:
    return get_user_model().objects.create_user(username=name, **fields)


# -- tokens ----------------------------------------------------------------------


async def test_token_round_trip_and_single_use() -> None:
    user = await sync_to_async(make_user)()
    value, expires = tokens.issue(user, ["public", f"user:{user.pk}"])
    found = tokens.verify(value, ["public"])
    assert found.user_pk == str(user.pk) and found.channels == ("public", f"user:{user.pk}")
    assert found.expires == pytest.approx(expires, abs=0.01)
    assert (await tokens.redeem(found)).pk == user.pk
    with pytest.raises(ChannelError, match="already used") as used:
        await tokens.redeem(tokens.verify(value, ["public"]))
    assert used.value.status == 403


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "invalid stream token"),
        (lambda t: "x" + t, "invalid stream token"),
        (lambda t: "", "invalid stream token"),
        (lambda t: "a:b:c", "invalid stream token"),
    ],
)
def test_tampered_tokens_are_refused(mutate: Any, reason: str) -> None:
    user = make_user()
    value, _ = tokens.issue(user, ["public"])
    with pytest.raises(ChannelError, match=reason):
        tokens.verify(mutate(value), ["public"])


def test_expired_and_wrong_channel_tokens_say_which() -> None:
    user = make_user()
    expired, _ = tokens.issue(user, ["public"], max_age=-1)
    with pytest.raises(ChannelError, match="expired"):
        tokens.verify(expired, ["public"])
    value, _ = tokens.issue(user, ["public"])
    with pytest.raises(ChannelError, match="not valid for channel 'members'"):
        tokens.verify(value, ["public", "members"])


def test_a_token_signed_for_something_else_is_refused() -> None:
    from django.core import signing

    forged = signing.dumps({"u": "1", "c": ["public"], "e": 9e12, "n": "x"}, salt="other")
    with pytest.raises(ChannelError, match="invalid"):
        tokens.verify(forged, ["public"])


async def test_token_of_an_inactive_user_is_refused() -> None:
    user = await sync_to_async(make_user)(is_active=False)
    value, _ = tokens.issue(user, ["public"])
    with pytest.raises(ChannelError, match="not active"):
        await tokens.redeem(tokens.verify(value, ["public"]))


async def test_stream_refuses_a_used_token_in_process() -> None:
    user = await sync_to_async(make_user)()
    value, _ = tokens.issue(user, ["members"])
    found = tokens.verify(value, ["members"])
    await tokens.redeem(found)
    response = await AsyncClient().get("/sse/", {"channel": "members", "token": value})
    assert response.status_code == 403
    assert response.content == b"stream token already used: request a new one\n"


# -- authentication classes -------------------------------------------------------


async def test_drf_token_authentication_in_process() -> None:
    from rest_framework.authtoken.models import Token

    user = await sync_to_async(make_user)()
    key = (await sync_to_async(Token.objects.create)(user=user)).key
    client = AsyncClient()
    url = "/sse/"
    assert (await client.get(url, {"channel": "members"})).status_code == 403
    bad = await client.get(url, {"channel": "members"}, headers={"Authorization": "Token x"})
    assert bad.status_code == 403 and b"authentication failed" in bad.content
    # The same checks apply: the DRF user still may not read staff.
    staff = await client.get(url, {"channel": "staff"}, headers={"Authorization": f"Token {key}"})
    assert staff.status_code == 403 and b"you are not allowed" in staff.content


@override_settings(SSE_AUTHENTICATION_CLASSES=["django_sse.auth.SessionAuthentication"])
async def test_session_only_ignores_authorization_headers() -> None:
    from rest_framework.authtoken.models import Token

    user = await sync_to_async(make_user)()
    key = (await sync_to_async(Token.objects.create)(user=user)).key
    response = await AsyncClient().get(
        "/sse/", {"channel": "members"}, headers={"Authorization": f"Token {key}"}
    )
    assert response.status_code == 403 and b"anonymous" in response.content


# -- CORS -----------------------------------------------------------------------------


ALLOWED = "https://app.example.test"


def test_origin_matching_is_exact() -> None:
    assert cors.allowed(ALLOWED)
    for other in (
        ALLOWED + "/",
        ALLOWED.upper(),
        "https://app.example.test.evil",
        "null",
        "",
        None,
    ):
        assert not cors.allowed(other)
    cors.check_origin(None, "http", "testserver")
    cors.check_origin("http://testserver", "http", "testserver")
    for origin in ("https://testserver", "http://testserver:81", "http://evil", "null"):
        with pytest.raises(ChannelError) as refused:
            cors.check_origin(origin, "http", "testserver")
        assert refused.value.status == 403


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}, 204),
        (
            {
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Last-Event-ID, authorization",
            },
            204,
        ),
        ({"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}, 403),
        (
            {
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-evil",
            },
            403,
        ),
        ({"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"}, 403),
        ({"Access-Control-Request-Method": "GET"}, 403),
    ],
)
async def test_preflight(headers: dict[str, str], status: int) -> None:
    response = await AsyncClient().options("/sse/?channel=public", headers=headers)
    assert response.status_code == status
    if status == 204:
        assert response["Access-Control-Allow-Origin"] == ALLOWED
        assert response["Access-Control-Allow-Credentials"] == "true"
        assert "*" not in response["Access-Control-Allow-Origin"]
    else:
        assert "Access-Control-Allow-Origin" not in response
        assert response.content.strip()


async def test_referer_is_never_an_origin() -> None:
    response = await AsyncClient().get(
        "/sse/", {"channel": "nowhere"}, headers={"Referer": ALLOWED + "/page"}
    )
    assert "Access-Control-Allow-Origin" not in response


async def test_a_foreign_origin_is_refused_with_a_bad_host_as_400() -> None:
    response = await AsyncClient().get(
        "/sse/", {"channel": "public"}, headers={"Origin": "https://evil.test", "Host": "bad host"}
    )
    assert response.status_code == 400


# -- limits ---------------------------------------------------------------------------


@override_settings(SSE_MAX_STREAMS_PER_USER=2)
def test_slots_are_counted_per_user_and_given_back() -> None:
    user = make_user()
    a, b = limits.reserve(user), limits.reserve(user)
    assert a is not None and b is not None
    with pytest.raises(ChannelError) as full:
        limits.reserve(user)
    assert full.value.status == 429 and "at most 2" in full.value.reason
    a.release()
    c = limits.reserve(user)
    assert c is not None and limits.open_streams(str(user.pk)) == 2
    del b, c  # a door that never started its stream: the slot goes with it
    assert limits.open_streams(str(user.pk)) == 0
    from django.contrib.auth.models import AnonymousUser

    assert limits.reserve(AnonymousUser()) is None


@override_settings(SSE_MAX_STREAM_AGE=100)
def test_stream_age_is_jittered_within_the_last_tenth() -> None:
    ages = [limits.stream_age() for _ in range(200)]
    assert all(a is not None and 90 <= a <= 100 for a in ages)
    assert len(set(ages)) > 100


def test_no_stream_age_by_default() -> None:
    assert limits.stream_age() is None


# -- revocation -----------------------------------------------------------------------


async def test_revoke_closes_matching_local_streams() -> None:
    hub = get_hub()
    subs = [await hub.subscribe(("public",), 10) for _ in range(4)]
    subs[0].owner, subs[1].owner, subs[2].owner = "7", "7", "8"
    subs[1].session = "s1"
    subs[0].channels = ("public", "members")
    await django_sse.arevoke(7, session="s1")
    await wait_until(lambda: subs[1].closed, timeout=2)
    assert not subs[0].closed
    await django_sse.arevoke(7, "members")
    await wait_until(lambda: subs[0].closed, timeout=2)
    assert subs[0].close_reason == "revoked" and not subs[2].closed and not subs[3].closed
    await asyncio.to_thread(django_sse.revoke, 8)
    await wait_until(lambda: subs[2].closed, timeout=2)
    assert not subs[3].closed
    for sub in subs:
        hub.unsubscribe(sub)


async def test_a_stream_revoked_while_starting_closes_at_once() -> None:
    from django_sse.stream import event_stream

    hub = get_hub()
    authenticated = time.monotonic()  # authenticated, then the user logs out...
    hub.revoke("5", session="s")
    # ...before the stream subscribed: it opens, says why, and ends.
    chunks = [
        c
        async for c in event_stream(("public",), owner="5", session="s", accepted_at=authenticated)
    ]
    body = b"".join(chunks)
    assert b": connected" in body and b"event: stream-closed" in body
    assert b'"reason":"revoked","reconnect":false' in body
    # A revocation before authentication, or of another session, does not apply.
    later = time.monotonic()
    stream = event_stream(("public",), owner="5", session="s", accepted_at=later)
    await anext(stream)
    other = event_stream(("public",), owner="5", session="t", accepted_at=authenticated)
    await anext(other)
    subs = [s for s in hub._subscriptions if s.owner == "5"]
    assert len(subs) == 2 and not any(s.closed for s in subs)
    await stream.aclose()
    await other.aclose()
    assert hub.subscribers("public") == 0


def test_revoke_needs_a_user() -> None:
    with pytest.raises(ValueError):
        django_sse.revoke(get_user_model()(username="unsaved"))


# -- redaction ------------------------------------------------------------------------


def test_tokens_are_redacted_from_log_records() -> None:
    assert redact("GET /sse/?channel=a&token=abc:def-_1 HTTP/1.1") == (
        "GET /sse/?channel=a&token=[redacted] HTTP/1.1"
    )
    assert redact("/sse/?csrftoken=keep") == "/sse/?csrftoken=keep"
    # Shaped like uvicorn's access record: the path is an argument.
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/sse/?token=secret&channel=a", "1.1", 200), None,
    )  # fmt: skip
    assert RedactStreamTokens().filter(record)
    assert "secret" not in record.getMessage() and "token=[redacted]" in record.getMessage()


# -- checks ---------------------------------------------------------------------------


def ids(messages: list[CheckMessage]) -> list[str]:
    assert all(m.hint for m in messages)
    return [str(m.id) for m in messages]


def test_project_settings_pass_the_access_check() -> None:
    assert check_access() == []


@pytest.mark.parametrize("path", ["nowhere.Auth", "django_sse.conf.Setting"])
def test_e010_authentication_class_cannot_authenticate(path: str) -> None:
    with override_settings(SSE_AUTHENTICATION_CLASSES=[path]):
        assert ids(check_access()) == ["django_sse.E010"]


@pytest.mark.parametrize(
    "origin", ["*", "null", "https://a.test/", "a.test", "https://a.test/path", "ftp://a.test"]
)
def test_e011_not_an_origin(origin: str) -> None:
    with override_settings(SSE_CORS_ALLOWED_ORIGINS=[origin]):
        assert ids(check_access()) == ["django_sse.E011"]
    assert not is_origin(origin)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_AUTHENTICATION_CLASSES", "django_sse.auth.SessionAuthentication"),
        ("SSE_CORS_ALLOWED_ORIGINS", [""]),
        ("SSE_MAX_STREAMS_PER_USER", 0),
        ("SSE_MAX_STREAM_AGE", "1h"),
        ("SSE_TOKEN_MAX_AGE", 0),
    ],
)
def test_e003_access_settings(name: str, value: Any) -> None:
    with override_settings(**{name: value}):
        [message] = check_settings()
    assert message.id == "django_sse.E003" and message.obj == name


@pytest.mark.redis
async def test_revoke_from_async_code_goes_through_redis_without_blocking(redis_url: str) -> None:
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        hub = get_hub()
        sub = await hub.subscribe(("public",), 10)
        assert hub.channel_name is not None  # joined the revocation group over Redis
        sub.owner = "9"
        try:
            django_sse.revoke(9)  # on the loop's thread: scheduled, not awaited
            assert not sub.closed
            await wait_until(lambda: sub.closed, timeout=5)
            assert sub.close_reason == "revoked"
        finally:
            hub.unsubscribe(sub)
            await hub.stop()
