"""Presence in one process (the in-memory layer): registration, the API,
reserved names, member data, access, checks."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from django_sse import apresence, asend_event, channels, presence
from django_sse.channels import registry
from django_sse.hub import get_hub
from django_sse.presence_api import Presence, default_member
from django_sse.presence_checks import check_presence
from tests.asgi_client import ASGIStream, asgi_stream
from tests.sse_client import unique, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def _events(body: bytes, name: str) -> list[dict[str, Any]]:
    out = []
    for block in body.split(b"\n\n"):
        lines = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
        if lines.get("event") == name:
            out.append(json.loads(lines["data"]))
    return out


@asynccontextmanager
async def stream(channel: str, user: Any = None) -> AsyncIterator[ASGIStream]:
    """A stream through the view, in process, as ``user`` (a session cookie)."""
    headers = {"Cookie": await _session_cookie(user)} if user is not None else {}
    async with asgi_stream(f"channel={channel}", headers) as s:
        yield s


@sync_to_async
def _session_cookie(user: Any) -> str:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


@sync_to_async
def _user(name: str, **fields: Any) -> Any:
    return get_user_model().objects.create(username=name, **fields)


async def test_snapshot_join_leave_and_the_api() -> None:
    channel = f"lobby:{unique()}"
    alice, bob = await _user("pa-alice"), await _user("pa-bob")
    async with stream(channel, alice) as a:
        await a.wait_for(b"event: presence\n")
        [first] = _events(a.body, "presence")
        assert [m["member"] for m in first["members"]] == [{"name": "<b>pa-alice</b>"}]
        async with stream(channel, bob) as b, stream(channel, bob) as b2:
            # Each stream's snapshot is read after its count reached the store.
            await b.wait_for(b"event: presence\n")
            await b2.wait_for(b"event: presence\n")
            await a.wait_for(b"pa-bob")
            got = await apresence(channel)
            assert isinstance(got, Presence)
            assert sorted(m.data["name"] for m in got.members) == [
                "<b>pa-alice</b>",
                "<b>pa-bob</b>",
            ]
            assert (got.users, got.streams, got.anonymous) == (2, 3, 0)
            # Keys are keyed hashes, never the pk itself.
            assert all(re.fullmatch("[0-9a-f]{20}", m.key) for m in got.members)
            joins = _events(a.body, "presence.join")
            assert [j["member"]["name"] for j in joins].count("<b>pa-bob</b>") == 1
            del b2, b
        await wait_until(lambda: len(_events(a.body, "presence.leave")) == 1, timeout=5)
        [left] = _events(a.body, "presence.leave")
        assert left["member"] == {"name": "<b>pa-bob</b>"}
        assert left["version"] > max(j["version"] for j in _events(a.body, "presence.join"))
        # Markup in member data never reaches the wire raw.
        assert b"<b>" not in a.body
    await wait_until(lambda: get_hub().subscribers(channel) == 0, timeout=5)
    assert (await apresence(channel)).streams == 0


async def test_a_resumed_stream_gets_a_fresh_snapshot() -> None:
    channel = f"desk:{2 * (abs(hash(unique())) % 10**6)}"
    alice = await _user("resume-alice", email="alice@example.com")
    async with stream(channel, alice) as a:
        await a.wait_for(b"event: presence\n")
        await asend_event("public", "x", 1)
    cookie = {"Cookie": await _session_cookie(alice)}
    async with asgi_stream(f"channel={channel}&lastEventId=garbage", cookie) as s:
        await s.wait_for(b"event: presence\n")
        [snap] = _events(s.body, "presence")
        # The default member: pk and display name, never the email.
        assert [m["member"] for m in snap["members"]] == [{"id": alice.pk, "name": "resume-alice"}]
        assert b"alice@example.com" not in s.body


async def test_presence_for_a_user_without_read_access_is_refused() -> None:
    alice = await _user("denied")
    with pytest.raises(PermissionDenied):
        await apresence("desk:3", user=alice)
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        await apresence("desk:4", user=AnonymousUser())
    assert (await apresence("desk:4", user=alice)).members == []
    with pytest.raises(ValueError, match="not a presence channel"):
        await apresence("public")
    with pytest.raises(ValueError, match="matches no registered"):
        await apresence("nowhere:1")
    with pytest.raises(ValueError, match="malformed"):
        await apresence("bad name")


def test_sync_presence() -> None:
    assert presence("desk:8").members == []
    alice = get_user_model().objects.create(username="sync-denied")
    with pytest.raises(PermissionDenied):
        presence("desk:9", user=alice)


async def test_sync_presence_refuses_async_code() -> None:
    with pytest.raises(RuntimeError, match="apresence"):
        presence("desk:8")


@pytest.mark.parametrize("name", ["presence", "presence.join", "Presence.Leave", "presence.x"])
async def test_presence_event_names_are_the_servers(name: str) -> None:
    with pytest.raises(ValueError, match="reserved for the server"):
        await asend_event("public", name, {})


def test_registration_errors() -> None:
    with pytest.raises(TypeError, match="member= needs presence=True"):
        channels.register("p1", channels.PUBLIC, member=default_member)
    with pytest.raises(TypeError, match="member must be callable"):
        channels.register("p2", channels.PUBLIC, presence=True, member="name")  # type: ignore[arg-type]

    @channels.register("p3:{pk}", presence=True, member=default_member)
    def can(user: Any, pk: str) -> bool:
        return True

    try:
        reg, _ = registry.require("p3:1")
        assert reg.presence and reg.member is default_member
    finally:
        channels.unregister("p3:{pk}")


def _broken(user: Any) -> Any:
    return ["not", "a", "dict"]


def _huge(user: Any) -> Any:
    return {"name": "x" * 5000}


def _secret(user: Any) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize("member", [_broken, _huge, _secret])
async def test_bad_member_data_shows_an_empty_member(member: Any) -> None:
    pattern = f"bad{unique()}"
    channels.register(pattern, channels.PUBLIC, presence=True, member=member)
    try:
        alice = await _user(f"bad-{pattern}", email="secret@example.com")
        async with stream(pattern, alice) as a:
            await a.wait_for(b"event: presence\n")
            [snap] = _events(a.body, "presence")
            assert [m["member"] for m in snap["members"]] == [{}]
    finally:
        channels.unregister(pattern)


async def test_anonymous_streams_are_counted_not_listed() -> None:
    channel = f"lobby:{unique()}"
    async with stream(channel) as a, stream(channel) as b:
        await a.wait_for(b"event: presence\n")
        await b.wait_for(b"event: presence\n")
        got = await apresence(channel)
        assert (got.members, got.users, got.streams, got.anonymous) == ([], 0, 2, 2)
        assert _events(a.body, "presence.join") == []


def test_default_member_is_pk_and_name_only() -> None:
    user = get_user_model()(pk=7, username="u7", email="e@x", first_name="Ann", last_name="Lee")
    assert default_member(user) == {"id": 7, "name": "Ann Lee"}
    user.first_name = user.last_name = ""
    assert default_member(user) == {"id": 7, "name": "u7"}


def ids(messages: list[Any]) -> list[str]:
    assert all(m.hint for m in messages)
    return [str(m.id) for m in messages]


def test_checks() -> None:
    assert check_presence() == []
    with override_settings(SSE_PRESENCE_HEARTBEAT=15, SSE_PRESENCE_TIMEOUT=15):
        assert ids(check_presence()) == ["django_sse.E040"]
    with override_settings(SSE_PRESENCE_MEMBER="nowhere.member"):
        assert ids(check_presence()) == ["django_sse.E041"]
    with override_settings(SSE_PRESENCE_MEMBER="django_sse.conf.conf"):
        assert ids(check_presence()) == ["django_sse.E041"]
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "other.Layer"}}):
        assert ids(check_presence()) == ["django_sse.W040"]
    # A careless default: who is online, shown to anyone.
    reg = channels.register("square:{name}", channels.PUBLIC, presence=True)
    try:
        [warning] = check_presence()
        assert (warning.id, warning.obj) == ("django_sse.W041", "square:{name}")
        assert warning.hint
        with override_settings(SSE_PRESENCE_MEMBER="tests.test_presence.project_member"):
            assert check_presence() == []
    finally:
        channels.unregister(reg.pattern)


@override_settings(SSE_PRESENCE_MEMBER="tests.test_presence.project_member")
async def test_project_wide_member_callable() -> None:
    channel = f"desk:{2 * (abs(hash(unique())) % 10**6)}"
    alice = await _user("project-alice")
    async with stream(channel, alice) as a:
        await a.wait_for(b"event: presence\n")
        [snap] = _events(a.body, "presence")
        assert [m["member"] for m in snap["members"]] == [{"initial": "p"}]


def project_member(user: Any) -> dict[str, Any]:
    return {"initial": user.get_username()[0]}


async def test_signals_once_per_member_and_channel_and_a_raising_receiver_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django_sse import signals

    got: list[tuple[str, dict[str, Any]]] = []

    def record(signal: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            got.append((signal, {k: v for k, v in kwargs.items() if k != "signal"}))

        return receiver

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    receivers = {
        name: record(name)
        for name in ("presence_joined", "presence_left", "channel_occupied", "channel_vacated")
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    signals.presence_joined.connect(broken)
    channel = f"lobby:{unique()}"
    try:
        alice = await _user("sig-alice")
        async with stream(channel, alice) as a, stream(channel, alice), stream(channel):
            await a.wait_for(b"event: presence.join\n")
        # The occupancy and the presence announcements go out independently.
        left = ("presence_left", {"channel": channel, "member": {"name": "<b>sig-alice</b>"}})
        await wait_until(
            lambda: ("channel_vacated", {"channel": channel}) in got and left in got, timeout=5
        )
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)
        signals.presence_joined.disconnect(broken)
    mine = [(s, k) for s, k in got if k.get("channel") == channel]
    assert mine.count(("channel_occupied", {"channel": channel})) == 1
    assert mine.count(("channel_vacated", {"channel": channel})) == 1
    member = {"name": "<b>sig-alice</b>"}
    assert mine.count(("presence_joined", {"channel": channel, "member": member})) == 1
    assert mine.count(("presence_left", {"channel": channel, "member": member})) == 1
    assert "receiver bug" in caplog.text


def test_the_presence_list_tag() -> None:
    from django.template import Context, Template, TemplateSyntaxError
    from django.test import RequestFactory

    from django_sse.presence_api import member_key

    user = get_user_model().objects.create(username="tag-user")
    request = RequestFactory().get("/")
    request.user = user
    html = Template(
        '{% load django_sse %}{% sse_presence "desk:2" others=True empty=label %}'
    ).render(Context({"request": request, "label": "<none>"}))
    assert 'data-sse-presence="desk:2"' in html
    assert f'data-sse-presence-self="{member_key("desk:2", user)}"' in html
    assert 'data-sse-presence-empty="&lt;none&gt;"' in html
    assert "data-sse-channels" in html and '"desk:2"' in html
    with pytest.raises(TemplateSyntaxError, match="not a presence channel"):
        Template('{% load django_sse %}{% sse_presence "public" %}').render(Context({}))


async def test_channels_left_empty_are_dropped_and_versions_go_on() -> None:
    """Streams on ever new channel names must not grow the store for good,
    and a channel dropped when empty never goes back in version."""
    from django_sse import presence_store

    def kept(channel: str) -> bool:
        return (presence_store.PRESENCE, channel) in presence_store._memory._channels

    names = [f"lobby:{unique()}" for _ in range(30)]
    for channel in names:
        async with stream(channel) as s:
            await s.wait_for(b"event: presence\n")
    await wait_until(lambda: not any(kept(n) for n in names), timeout=5)
    alice = await _user("drop-alice")
    versions = []
    for _ in range(2):
        async with stream(names[0], alice) as s:
            await s.wait_for(b"event: presence\n")
            [snap] = _events(s.body, "presence")
            versions.append(snap["version"])
        await wait_until(lambda: not kept(names[0]), timeout=5)
    assert versions[1] > versions[0] > 0


async def test_one_sweep_per_channel_however_often_streams_come_and_go() -> None:
    """A process left with another process's entries sweeps a channel once,
    not once per stream that came and went (the sweeps would pile up)."""
    from django_sse.presence_store import PRESENCE, Update, get_backend

    channel = f"lobby:{unique()}"
    # Another process's member, beating for a while.
    await get_backend().update(PRESENCE, channel, "elsewhere", Update({"x": (1, "{}")}), 60.0)
    for _ in range(4):
        async with stream(channel) as s:
            await s.wait_for(b"event: presence\n")
        await wait_until(lambda: get_hub().subscribers(channel) == 0, timeout=5)

    def sweeps() -> int:
        return sum(1 for t in get_hub().tasks.running if "_sweep" in t.get_coro().__qualname__)

    await wait_until(lambda: sweeps() >= 1, timeout=5)
    assert sweeps() == 1
    await get_backend().update(PRESENCE, channel, "elsewhere", Update(removed={"x"}), 60.0)
