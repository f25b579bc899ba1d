"""Attacks on publishing: the REST endpoint and ``manage.py sse_send``.

User A, who holds ``django_sse.publish_event``, tries to publish into user
B's private channel and to forge the server's own events (``stream-closed``,
``snapshot``) through a real server; hostile ``sse_send`` arguments run in
processes of their own; hypothesis fuzzes the endpoint's JSON bodies and the
command's arguments: only a 4xx (or 201) with one-line reasons, or exit
status 1 with one line, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_sse.names import CHANNEL_NAME_RE
from tests.servers import ROOT, Server, base_env, running_server
from tests.sse_client import login, open_stream, publish, unique


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as c:
        yield c


async def csrf_post(client: httpx.AsyncClient, url: str, body: object) -> httpx.Response:
    """POST JSON as a logged-in browser would, with the session's CSRF token."""
    base = url.split("/sse/")[0]
    if "csrftoken" not in client.cookies:
        (await client.get(f"{base}/admin/login/")).raise_for_status()
    return await client.post(url, json=body, headers={"X-CSRFToken": client.cookies["csrftoken"]})


@pytest.mark.server
async def test_a_publisher_cannot_reach_b_or_forge_server_events(server: Server) -> None:
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        await login(a, server.url, unique("a"), perm="django_sse.publish_event")
        b_pk = await login(b, server.url, unique("b"))
        topic = f"news:{unique()}"
        endpoint = f"{server.url}/sse/publish/"
        async with open_stream(b, f"{server.url}/sse/?channel=user:{b_pk}&channel={topic}") as s:
            attacks = [
                ({"channel": f"user:{b_pk}", "event": "notification", "data": {"m": "pwned"}}, 403),
                ({"channel": f"user:{b_pk}", "event": "message", "data": "<img src=x>"}, 403),
                ({"channel": topic, "event": "stream-closed", "data": {"reconnect": False}}, 400),
                ({"channel": topic, "event": "stream-reset", "data": {"reason": "x"}}, 400),
                ({"channel": topic, "event": "snapshot", "data": {"channel": topic}}, 400),
                ({"channel": topic, "event": "Stream-Closed"}, 400),
                ({"channel": "user-typo", "event": "e"}, 400),
            ]
            for body, status in attacks:
                response = await csrf_post(a, endpoint, body)
                assert response.status_code == status, (body, response.text)
                reason = json.dumps(response.json())
                assert "\\n" not in reason and len(reason) < 300, reason
            # The same client may publish where the policy lets it: the refusals
            # above are the policy's, not a broken request.
            ok = await csrf_post(a, endpoint, {"channel": topic, "event": "marker", "data": 1})
            assert ok.status_code == 201, ok.text
            await publish(b, server.url, f"user:{b_pk}", event="own", data=2)  # server code
            got = await s.collect(2)
    assert sorted((e.event, e.data) for e in got) == [("marker", "1"), ("own", "2")]


@pytest.mark.server
async def test_a_hook_without_fields_leaks_nothing_from_a_real_server(server_db: str) -> None:
    import sqlite3

    victim = unique("victim")
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_CARELESS_HOOKS": "1"}
    with running_server("uvicorn", **env) as srv:
        async with httpx.AsyncClient(timeout=15.0) as boss, httpx.AsyncClient(timeout=15.0) as v:
            await login(boss, srv.url, unique("boss"), staff="1")
            async with open_stream(boss, f"{srv.url}/sse/?channel=staff") as stream:
                # Creates, saves and logs in the user inside the server: its hook runs.
                victim_pk = await login(v, srv.url, victim)
                await publish(boss, srv.url, "staff", event="marker", data=1)
                [first] = await stream.collect(1)
                body = b"".join([e.data.encode() for e in stream.events])
    assert first.event == "marker", first
    assert victim.encode() not in body and b"password" not in body
    with sqlite3.connect(f"file:{server_db}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT name, payload FROM django_sse_storedevent WHERE channel = 'staff'"
        ).fetchall()
    assert not [row for row in rows if row[0].startswith("auth.user") or victim in row[1]]
    assert victim_pk


async def run_sse_send(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "django",
        "sse_send",
        *args,
        cwd=ROOT,
        env=base_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert out == b""
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["-rf", "e", "{}"], b"", "the following arguments are required: data"),
        (["--", "-rf", "e", "{}"], b"", "is malformed"),
        (["public", "e", "{}", "--bogus"], b"", "unrecognized arguments: --bogus"),
        (["public"], b"", "the following arguments are required: event, data"),
        (["public", "stream-reset", "{}"], b"", "reserved for the server"),
        (["nowhere", "e", "{}"], b"", "matches no registered channel pattern"),
        (["public", "e\udcff", "{}"], b"", "not valid UTF-8"),
        (["public", "e", "[" * 50_000], b"", "cannot be read as JSON"),
        (["public", "e", "9" * 5_000], b"", "cannot be read as JSON"),
        (["public", "e", "-"], b"\xff\xfe{}", "not valid"),  # JSON, or text
        (["public", "e", "-", "--text"], b"\xff\xfe<b>", "not valid"),  # UTF-8, or text
    ],
)
async def test_hostile_sse_send_arguments_exit_1_with_one_line(
    args: list[str], stdin: bytes, error: str
) -> None:
    status, err = await run_sse_send(*args, stdin=stdin)
    assert status == 1, err
    [line] = err.strip().splitlines()
    assert line.startswith("CommandError: ") and error in line, line


# -- fuzzing, in-process -----------------------------------------------------

CHANNELS = st.one_of(
    st.sampled_from(
        ["public", "wall", "bulletin", "board:x", "user:1", "news:a", "nowhere", "staff"]
    ),
    st.from_regex(CHANNEL_NAME_RE, fullmatch=True),
    st.text(max_size=120),
)
EVENTS = st.one_of(
    st.sampled_from(["e", "stream-closed", "snapshot", "STREAM-x", "message"]),
    st.text(max_size=220),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.one_of(
    st.fixed_dictionaries({"channel": CHANNELS, "event": EVENTS}, optional={"data": JSON}).map(
        lambda body: json.dumps(body).encode()
    ),
    st.dictionaries(st.sampled_from(["channel", "event", "data", "x"]), JSON).map(
        lambda body: json.dumps(body).encode()
    ),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.integers(900, 100_000).map(
        lambda depth: (
            b'{"channel": "public", "event": "e", "data": ' + b"[" * depth + b"]" * depth + b"}"
        )
    ),
)


def lines_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [line for v in value.values() for line in lines_of(v)]
    if isinstance(value, list):
        return [line for v in value for line in lines_of(v)]
    return [str(value)]


@pytest.mark.django_db(transaction=True)
def test_fuzzed_rest_bodies_get_a_4xx_with_one_line_reasons_never_a_500() -> None:
    user = get_user_model().objects.create(username="fuzzer")
    user.user_permissions.add(Permission.objects.get(codename="publish_event"))
    api = APIClient()  # raises on a 500: any unhandled exception fails the example
    api.force_authenticate(get_user_model().objects.get(pk=user.pk))
    url = reverse("django_sse:publish")

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=BODIES)
    def attempt(body: bytes) -> None:
        response = api.post(url, body, content_type="application/json")
        assert response.status_code in {201, 400, 403}, response.content
        if response.status_code != 201:
            assert all("\n" not in line for line in lines_of(response.json()))

    attempt()


HOSTILE = st.text(max_size=60).filter(lambda s: s != "-")  # "-" reads stdin


@pytest.mark.django_db(transaction=True)
def test_fuzzed_sse_send_arguments_succeed_or_raise_a_one_line_command_error() -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        channel=st.one_of(CHANNELS, HOSTILE),
        event=st.one_of(EVENTS, HOSTILE),
        data=st.one_of(
            JSON.map(json.dumps),
            HOSTILE,
            st.integers(900, 60_000).map(lambda depth: "[" * depth),
            st.integers(4_301, 10_000).map(lambda digits: "9" * digits),
        ),
        text=st.booleans(),
        options=st.lists(
            st.sampled_from(["--text", "--bogus", "-x", "--traceback=no"]), max_size=2
        ),
    )
    def attempt(channel: str, event: str, data: str, text: bool, options: list[str]) -> None:
        args = [*options, *(["--text"] if text else []), "--", channel, event, data]
        try:
            call_command("sse_send", *args, stdout=io.StringIO(), stderr=io.StringIO())
        except CommandError as exc:
            assert "\n" not in str(exc) and str(exc)

    attempt()


@pytest.mark.server
async def test_a_publisher_cannot_forge_inbox_events_on_a_shared_channel(server: Server) -> None:
    """The wire does not say which channel an event came on, so ``DjangoSSE.inbox``
    would take a ``notification`` or ``inbox`` event on any channel of B's page
    as B's own: a forged item or unread count. Those names belong to the user
    channels (where only server code and the owner publish)."""
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        a_pk = await login(a, server.url, unique("a"), perm="django_sse.publish_event")
        b_pk = await login(b, server.url, unique("b"))
        topic = f"news:{unique()}"
        endpoint = f"{server.url}/sse/publish/"
        forged = {"id": 2**40, "message": "Your account is locked: /reset/", "unread": 99}
        async with open_stream(b, f"{server.url}/sse/?channel=user:{b_pk}&channel={topic}") as s:
            for event in ("notification", "inbox", "live-notify", "Inbox"):
                body = {"channel": topic, "event": event, "data": forged}
                response = await csrf_post(a, endpoint, body)
                assert response.status_code == 400, (event, response.text)
                assert "user channel" in response.text, response.text
            # On A's own channel they stay A's to send (a user can fool only themselves).
            own = {"channel": f"user:{a_pk}", "event": "inbox", "data": {"unread": 1}}
            assert (await csrf_post(a, endpoint, own)).status_code == 201
            ok = await csrf_post(a, endpoint, {"channel": topic, "event": "marker", "data": 1})
            assert ok.status_code == 201, ok.text
            got = await s.collect(1)
    assert [(e.event, e.data) for e in got] == [("marker", "1")]
